from django.apps import AppConfig


class ModelsMarketConfig(AppConfig):
    name = "models_market"
