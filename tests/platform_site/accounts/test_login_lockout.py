"""Failed log-ins are limited per account and per address (django-axes); a lockout is a page that says why."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from tests.factories import PASSWORD

LOGIN = "/accounts/login/"


def log_in(client: Client, username: str, password: str, *, address: str):
    return client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=address)


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def fail(times: int, username: str, *, address: str) -> list[int]:
    client = Client()
    return [log_in(client, username, "wrong-guess", address=address).status_code for _ in range(times)]


@pytest.mark.django_db
def test_after_the_limit_of_wrong_passwords_the_right_one_is_refused_with_a_page_that_says_why(alice):
    statuses = fail(settings.AXES_FAILURE_LIMIT, "alice", address="203.0.113.5")
    assert statuses == [200] * (settings.AXES_FAILURE_LIMIT - 1) + [429]  # the form again, then the lockout
    client = Client()
    response = log_in(client, "alice", PASSWORD, address="203.0.113.5")
    assert response.status_code == 429
    page = response.content.decode()
    assert "Too many failed log-ins" in page
    assert f"paused for {round(settings.AXES_COOLOFF_TIME.total_seconds() / 60)} minutes" in page
    assert '<header class="topbar">' in page  # the site's own page, not a bare text
    assert not logged_in(client)


@pytest.mark.django_db
def test_the_account_is_locked_from_another_address_too(alice):
    fail(settings.AXES_FAILURE_LIMIT, "alice", address="203.0.113.5")
    client = Client()
    assert log_in(client, "alice", PASSWORD, address="198.51.100.7").status_code == 429
    assert not logged_in(client)


@pytest.mark.django_db
def test_an_address_that_guesses_many_accounts_is_locked_for_all_of_them(alice, bob):
    for index in range(settings.AXES_FAILURE_LIMIT):
        fail(1, f"nobody{index}", address="203.0.113.9")
    client = Client()
    assert log_in(client, "bob", PASSWORD, address="203.0.113.9").status_code == 429
    assert not logged_in(client)


@pytest.mark.django_db
def test_another_account_from_another_address_is_unaffected(alice, bob):
    fail(settings.AXES_FAILURE_LIMIT + 3, "alice", address="203.0.113.5")
    client = Client()
    response = log_in(client, "bob", PASSWORD, address="198.51.100.7")
    assert response.status_code == 302
    assert logged_in(client)


@pytest.mark.django_db
def test_fewer_failures_than_the_limit_do_not_lock_and_a_success_forgets_them(alice):
    fail(settings.AXES_FAILURE_LIMIT - 1, "alice", address="203.0.113.5")
    assert log_in(Client(), "alice", PASSWORD, address="203.0.113.5").status_code == 302
    fail(settings.AXES_FAILURE_LIMIT - 1, "alice", address="203.0.113.5")
    client = Client()
    assert log_in(client, "alice", PASSWORD, address="203.0.113.5").status_code == 302
    assert logged_in(client)


@pytest.mark.django_db
def test_after_the_cool_off_the_right_password_works_again(alice):
    fail(settings.AXES_FAILURE_LIMIT, "alice", address="203.0.113.5")
    assert log_in(Client(), "alice", PASSWORD, address="203.0.113.5").status_code == 429
    AccessAttempt.objects.update(
        attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1)
    )
    client = Client()
    assert log_in(client, "alice", PASSWORD, address="203.0.113.5").status_code == 302
    assert logged_in(client)


@pytest.mark.django_db
def test_staff_can_lift_a_lockout_with_axes_reset(alice):
    fail(settings.AXES_FAILURE_LIMIT, "alice", address="203.0.113.5")
    call_command("axes_reset_username", "alice")
    call_command("axes_reset_ip", "203.0.113.5")
    client = Client()
    assert log_in(client, "alice", PASSWORD, address="203.0.113.5").status_code == 302


@pytest.mark.django_db
def test_the_admin_log_in_is_limited_too(staff):
    fail(settings.AXES_FAILURE_LIMIT, staff.username, address="203.0.113.5")
    client = Client()
    response = client.post(
        "/admin/login/", {"username": staff.username, "password": PASSWORD}, REMOTE_ADDR="198.51.100.7"
    )
    assert response.status_code == 429
    assert "Too many failed log-ins" in response.content.decode()
