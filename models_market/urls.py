from django.urls import path

from models_market import views

app_name = "models_market"

urlpatterns = [path("", views.index, name="index")]

api_urlpatterns: list = []
