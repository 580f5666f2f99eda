from django.apps import AppConfig


class DaoConfig(AppConfig):
    name = "dao"
