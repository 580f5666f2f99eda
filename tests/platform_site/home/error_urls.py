"""The site's URLconf plus views that fail on purpose, for the error-page tests."""

from django.core.exceptions import SuspiciousOperation
from django.urls import path

from platform_site import urls as site_urls
from platform_site.errors import PermissionDenied


def boom(request):
    raise RuntimeError("a bug")


def forbidden(request):
    raise PermissionDenied("only the owner publishes")


def suspicious(request):
    raise SuspiciousOperation("a tampered cookie")


urlpatterns = [
    path("test/boom/", boom),
    path("api/test/boom/", boom),
    path("test/forbidden/", forbidden),
    path("test/suspicious/", suspicious),
    *site_urls.urlpatterns,
]

handler400 = site_urls.handler400
handler403 = site_urls.handler403
handler404 = site_urls.handler404
handler500 = site_urls.handler500
