"""Domain errors raised by services; the API exception handler turns them into HTTP responses.

NotFound and PermissionDenied are also Django's own exceptions, so a page view that lets one escape answers
404 or 403 like any other Django view.
"""

from django.core import exceptions as django_exceptions
from django.http import Http404


class DomainError(Exception):
    status_code = 400
    code = "invalid"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unauthenticated(DomainError):
    """The credentials a request came with are no longer valid (401): a token revoked or expired since."""

    status_code = 401
    code = "not_authenticated"


class NotFound(DomainError, Http404):
    status_code = 404
    code = "not_found"


class PaymentRequired(DomainError):
    """The caller cannot pay for what they asked (402); the message says their balance in words."""

    status_code = 402
    code = "payment_required"


class PermissionDenied(DomainError, django_exceptions.PermissionDenied):
    status_code = 403
    code = "permission_denied"


class Conflict(DomainError):
    status_code = 409
    code = "conflict"


class TooManyRequests(DomainError):
    """Over a per-user limit (429); `retry_after` seconds, if given, is sent as the Retry-After header."""

    status_code = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
