from django.urls import path

from platform_site.home import views

app_name = "home"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("healthz", views.healthz, name="healthz"),
    path("ops/", views.ops, name="ops"),
]
