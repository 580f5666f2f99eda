from django.apps import AppConfig


class FederationConfig(AppConfig):
    name = "federation"

    def ready(self) -> None:
        # The simulated parties' Celery task lives beside the client it drives, not in tasks.py.
        from federation import simulation  # noqa: F401
