from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "platform_site.accounts"
    label = "accounts"

    def ready(self) -> None:
        # Registers the OpenAPI extension for ApiTokenAuthentication with drf-spectacular.
        from platform_site.accounts import schema  # noqa: F401
