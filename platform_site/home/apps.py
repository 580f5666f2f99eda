from django.apps import AppConfig


class HomeConfig(AppConfig):
    name = "platform_site.home"
    label = "home"
