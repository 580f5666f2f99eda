from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.templatetags.static import static
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from dao import urls as dao_urls
from federation import urls as federation_urls
from finance import urls as finance_urls
from ledger import urls as ledger_urls
from marketplace import urls as marketplace_urls
from models_market import urls as models_market_urls
from platform_site.accounts import urls as accounts_urls
from platform_site.home import urls as home_urls
from platform_site.jobs import urls as jobs_urls

api_urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("accounts/", include(accounts_urls.api_urlpatterns)),
    path("jobs/", include(jobs_urls.api_urlpatterns)),
    path("ledger/", include(ledger_urls.api_urlpatterns)),
    path("data/", include(marketplace_urls.api_urlpatterns)),
    path("models/", include(models_market_urls.api_urlpatterns)),
    path("daos/", include(dao_urls.api_urlpatterns)),
    path("federations/", include(federation_urls.api_urlpatterns)),
    path("finance/", include(finance_urls.api_urlpatterns)),
]


def favicon(request: HttpRequest) -> HttpResponse:
    # Browsers ask for /favicon.ico on pages without a <link rel="icon"> (the API's JSON, raw notes).
    return redirect(static("favicon.ico"), permanent=True)


urlpatterns = [
    path("favicon.ico", favicon),
    path("", include(home_urls)),
    path("accounts/", include(accounts_urls)),
    path("jobs/", include(jobs_urls)),
    path("ledger/", include(ledger_urls)),
    path("data/", include(marketplace_urls)),
    path("models/", include(models_market_urls)),
    path("daos/", include(dao_urls)),
    path("federated/", include(federation_urls)),
    path("finance/", include(finance_urls)),
    path("api/", include(api_urlpatterns)),
    path("admin/", admin.site.urls),
]

handler400 = "platform_site.home.error_pages.bad_request"
handler403 = "platform_site.home.error_pages.permission_denied"
handler404 = "platform_site.home.error_pages.page_not_found"
handler500 = "platform_site.home.error_pages.server_error"
