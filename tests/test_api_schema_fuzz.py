"""Schemathesis fuzzes every operation in /api/schema/: no server error and no response that breaks the schema.

New endpoints join this test by appearing in the schema. Rate limits are lifted (the fuzzer is a throttle-exempt
user with no limit on queued jobs, and the anonymous rate is raised) so that the cases reach the views instead of meeting 429s.
"""

from collections import Counter

import pytest
import schemathesis
from django.core.management import call_command
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from platform_site.accounts.services import api_token_create
from tests.factories import UserFactory

CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
FUZZ = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)

schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application()).exclude(
    path_regex=r"^/api/(schema|docs)/"
)


@pytest.fixture(autouse=True)
def _keep_the_test_connection_open():
    # Schemathesis calls the WSGI handler directly; Django would close the connection after each request,
    # and with it the test's transaction (Django's own test client disconnects these handlers too).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


STATUSES: dict[str, Counter] = {"anonymous": Counter(), "logged_in": Counter()}
FUZZER = "fuzzer"


@pytest.fixture(autouse=True)
def _rate_limits_lifted_for_the_fuzzer(settings):
    settings.THROTTLE_EXEMPT_USERS = [FUZZER]
    settings.JOB_MAX_ACTIVE_PER_USER = 0  # the per-user limit of queued jobs would answer 429 too
    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "anon": "1000000/minute"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}


@pytest.fixture
def token(db) -> str:
    user = UserFactory(username=FUZZER)
    return api_token_create(user=user, name="fuzz")[1]


def test_the_schema_is_valid_and_warning_free(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))


@pytest.mark.slow
@pytest.mark.django_db
@schema.parametrize()
@FUZZ
def test_anonymous_fuzzing_finds_no_server_error(case):
    response = case.call_and_validate(checks=CHECKS)
    STATUSES["anonymous"][response.status_code] += 1


@pytest.mark.slow
@schema.parametrize()
@FUZZ
def test_logged_in_fuzzing_finds_no_server_error(case, token):
    response = case.call_and_validate(checks=CHECKS, headers={"Authorization": f"Token {token}"})
    STATUSES["logged_in"][response.status_code] += 1


@pytest.mark.slow
@pytest.mark.parametrize("who", ["anonymous", "logged_in"])
def test_the_fuzzing_above_explored_instead_of_meeting_rate_limits(who):
    # Runs after the fuzzing tests of this module (pytest keeps the order of definition).
    statuses = STATUSES[who]
    calls = sum(statuses.values())
    print(who, calls, "calls:", dict(sorted(statuses.items())))  # shown with -s
    if calls < 200:
        pytest.skip(f"only {calls} {who} calls were made in this run: run the whole module")
    assert statuses[429] <= 0.05 * calls, statuses
    if who == "logged_in":
        # The key works: a good share of calls succeed. Most others are 404s of random ids in the paths (the
        # fuzzer owns few objects) and 400s of random bodies, which is the exploring this asks for.
        assert sum(n for status, n in statuses.items() if 200 <= status < 300) >= 0.1 * calls, statuses
        assert statuses[401] + statuses[403] <= 0.1 * calls, statuses
