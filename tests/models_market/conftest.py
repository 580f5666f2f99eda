"""Fixtures of the models market's tests: more personas, a scratch media folder and a cold model cache."""

import pytest

from ledger.services import active_key_forget
from models_market import runtime
from tests.factories import UserFactory


@pytest.fixture(autouse=True)
def _media_and_cache(request, settings, tmp_path):
    # A scratch media folder, except where the real worker runs the jobs: it reads the files where it was
    # started (the test settings' VAR_DIR), so a test that uses it must write them there too.
    if "celery_worker" not in request.fixturenames:
        settings.MEDIA_ROOT = tmp_path / "media"
    runtime.cache_clear()
    active_key_forget()  # another test's database may have had another active key
    yield
    runtime.cache_clear()


@pytest.fixture
def carol(db):
    """The owner of a parent model."""
    return UserFactory(username="carol")


@pytest.fixture
def dora(db):
    """The owner of the dataset a model was trained on."""
    return UserFactory(username="dora")
