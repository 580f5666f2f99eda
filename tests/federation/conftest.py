"""Fixtures of federated learning's tests: a scratch media folder and the personas (alice coordinates; bob, carol
and dora are parties; mallory must be refused)."""

import pytest

from ledger.services import active_key_forget
from tests.factories import UserFactory


@pytest.fixture(autouse=True)
def _media(request, settings, tmp_path):
    # A scratch media folder, except where the real worker runs the jobs: it reads the files where it was started.
    if "celery_worker" not in request.fixturenames:
        settings.MEDIA_ROOT = tmp_path / "media"
    active_key_forget()  # another test's database may have had another active key


@pytest.fixture
def carol(db):
    return UserFactory(username="carol")


@pytest.fixture
def dora(db):
    return UserFactory(username="dora")
