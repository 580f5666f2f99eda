"""The API's rate limits: rates come from the settings at request time, and listed users are exempt."""

import pytest
from django.core.cache import cache
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory, force_authenticate
from rest_framework.views import APIView

from platform_site.throttling import AnonRateThrottle, UserRateThrottle


class PingApi(APIView):
    permission_classes = []
    throttle_classes = [AnonRateThrottle, UserRateThrottle]  # the site's defaults, whatever a fixture set

    def get(self, request):
        return Response({"ok": True})


def statuses(user, times: int) -> list[int]:
    factory = APIRequestFactory()
    result = []
    for _ in range(times):
        request = factory.get("/ping/")
        if user is not None:
            force_authenticate(request, user=user)
        result.append(PingApi.as_view()(request).status_code)
    return result


@pytest.fixture
def low_rates(settings):
    cache.clear()
    rates = {"anon": "2/minute", "user": "3/minute"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    yield
    cache.clear()


def test_a_user_past_the_rate_gets_429_and_the_rate_is_read_from_the_settings(low_rates, bob):
    assert statuses(bob, 5) == [200, 200, 200, 429, 429]


def test_an_anonymous_client_past_the_rate_gets_429(low_rates, db):
    assert statuses(None, 3) == [200, 200, 429]


def test_a_user_named_in_throttle_exempt_users_is_not_limited(low_rates, settings, alice, bob):
    settings.THROTTLE_EXEMPT_USERS = ["alice"]
    assert statuses(alice, 6) == [200] * 6
    assert statuses(bob, 4) == [200, 200, 200, 429]
