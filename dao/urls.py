from django.urls import path

from dao import views

app_name = "dao"

urlpatterns = [path("", views.index, name="index")]

api_urlpatterns: list = []
