from django.urls import path

from federation import views

app_name = "federation"

urlpatterns = [path("", views.index, name="index")]

api_urlpatterns: list = []
