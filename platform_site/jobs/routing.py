from django.urls import path

from platform_site.jobs.consumers import JobConsumer

websocket_urlpatterns = [path("ws/jobs/<int:job_id>/", JobConsumer.as_asgi())]
