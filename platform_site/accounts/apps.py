from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "platform_site.accounts"
    label = "accounts"
