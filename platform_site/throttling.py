"""The API's rate limits: DRF's, with rates read at request time and named users exempt."""

from types import SimpleNamespace

from django.conf import settings
from rest_framework import throttling


class _SettingsRates:
    """Takes the rate from the settings on each request (DRF binds it at import), so that it can be changed."""

    def get_rate(self):
        return settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"][self.scope]


class AnonRateThrottle(_SettingsRates, throttling.AnonRateThrottle):
    pass


class UserRateThrottle(_SettingsRates, throttling.UserRateThrottle):
    """Per user; the usernames in THROTTLE_EXEMPT_USERS (a monitoring probe, a fuzzing test) are not limited."""

    def allow_request(self, request, view) -> bool:
        user = request.user
        if user and user.is_authenticated and user.get_username() in settings.THROTTLE_EXEMPT_USERS:
            return True
        return super().allow_request(request, view)


class ScopedRateThrottle(throttling.ScopedRateThrottle):
    """Per user and per view's `throttle_scope` (the predict endpoint's own limit); a scope without a rate in
    the settings is not limited, and THROTTLE_EXEMPT_USERS are not either."""

    def get_rate(self):
        return settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"].get(self.scope)

    def allow_request(self, request, view) -> bool:
        user = request.user
        if user and user.is_authenticated and user.get_username() in settings.THROTTLE_EXEMPT_USERS:
            return True
        return super().allow_request(request, view)


def throttles_allow(*, user, view: type) -> bool:
    """Whether the throttles of `view` (an APIView class) let the authenticated `user` make one more request,
    counted as DRF's own check counts it: for an endpoint that answers ahead of DRF and hands a refused request
    to DRF, which says 429 its way."""
    request = SimpleNamespace(user=user, META={})
    allowed = [throttle().allow_request(request, view) for throttle in view.throttle_classes]  # each counts
    return all(allowed)
