from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "platform_site.jobs"
    label = "jobs"

    def ready(self) -> None:
        from platform_site.jobs import signals  # noqa: F401  (worker heartbeat hooks)
