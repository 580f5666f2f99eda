import pytest
from rest_framework.test import APIClient

from tests.factories import UserFactory


@pytest.fixture(autouse=True)
def _no_throttling(settings):
    # Rate limits are per process and would make the suite's many calls flaky; their own test sets them.
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_CLASSES": []}


@pytest.fixture
def alice(db):
    """The owner: of jobs, organizations, datasets."""
    return UserFactory(username="alice")


@pytest.fixture
def bob(db):
    """The buyer."""
    return UserFactory(username="bob")


@pytest.fixture
def mallory(db):
    """Who must be refused."""
    return UserFactory(username="mallory")


@pytest.fixture
def staff(db):
    return UserFactory(username="olivia", is_staff=True, is_superuser=True)


@pytest.fixture
def api():
    return APIClient()


def api_as(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client
