"""The site's 400/403/404/500 answers: JSON under /api/, the site's styled pages elsewhere.

The 400 and 500 pages render without the request (no session, no user, no database), as Django's own handlers
do; the 500 falls back to a fixed page when even its template fails (a broken URLconf or template).
"""

import logging

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import loader

from platform_site.errors import DomainError

logger = logging.getLogger(__name__)

_FALLBACK_500 = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Server error · Platform</title>'
    '<meta name="viewport" content="width=device-width, initial-scale=1"></head>'
    '<body style="font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem">'
    "<h1>Something went wrong on our side</h1><p>The error has been logged. Try again in a moment, or go back "
    'to <a href="/">the home page</a>.</p></body></html>'
)


def _is_api(request: HttpRequest | None) -> bool:
    return request is not None and request.path.startswith("/api/")


def _message(exception: BaseException | None) -> str:
    # Only domain errors' messages are written for the reader; Django's own (Http404 from get_object_or_404)
    # name models and lookups.
    return exception.message if isinstance(exception, DomainError) else ""


def bad_request(request: HttpRequest, exception: BaseException | None = None) -> HttpResponse:
    if _is_api(request):
        return JsonResponse({"detail": "bad request", "code": "bad_request"}, status=400)
    return HttpResponse(loader.render_to_string("400.html"), status=400)


def permission_denied(request: HttpRequest, exception: BaseException | None = None) -> HttpResponse:
    message = _message(exception)
    if _is_api(request):
        return JsonResponse(
            {"detail": message or "you may not do this", "code": "permission_denied"}, status=403
        )
    return HttpResponse(loader.render_to_string("403.html", {"message": message}, request), status=403)


def page_not_found(request: HttpRequest, exception: BaseException | None = None) -> HttpResponse:
    message = _message(exception)
    if _is_api(request):
        return JsonResponse({"detail": message or "no such endpoint", "code": "not_found"}, status=404)
    context = {"message": message, "request_path": request.path}
    return HttpResponse(loader.render_to_string("404.html", context, request), status=404)


def server_error(request: HttpRequest | None = None) -> HttpResponse:
    if _is_api(request):
        return JsonResponse({"detail": "server error", "code": "server_error"}, status=500)
    try:
        # No request: the failure may be the session, the user or the database itself.
        body = loader.render_to_string("500.html")
    except Exception:
        logger.exception("the 500 page could not be rendered; sent the fixed one")
        body = _FALLBACK_500
    return HttpResponse(body, status=500)
