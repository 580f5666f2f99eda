from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from platform_site.accounts.models import Membership, Organization
from platform_site.home.management.commands.demo import DEMO_PASSWORD


def seed() -> str:
    out = StringIO()
    call_command("demo", "--seed", stdout=out)  # DEBUG is off here, as under `make run`
    return out.getvalue()


def counts() -> tuple[int, int, int]:
    return get_user_model().objects.count(), Organization.objects.count(), Membership.objects.count()


def test_demo_seed_creates_the_demo_users_and_organizations(db):
    seed()

    users = get_user_model().objects.in_bulk(["alice", "bob", "carol", "admin"], field_name="username")
    assert set(users) == {"alice", "bob", "carol", "admin"}
    assert all(user.check_password(DEMO_PASSWORD) for user in users.values())
    assert users["admin"].is_staff and users["admin"].is_superuser
    assert not users["alice"].is_staff

    acme = Organization.objects.get(name="Acme Analytics")
    roles = dict(acme.memberships.values_list("user__username", "role"))
    assert roles == {"alice": Membership.Role.OWNER, "bob": Membership.Role.MEMBER}
    northwind = Organization.objects.get(name="Northwind Bank")
    assert dict(northwind.memberships.values_list("user__username", "role")) == {
        "carol": Membership.Role.OWNER
    }


def test_demo_seed_twice_changes_nothing(db):
    seed()
    before = counts()

    out = seed()

    assert counts() == before
    assert "created" not in out
    assert Membership.objects.filter(
        organization__name="Acme Analytics", user__username="alice", role=Membership.Role.OWNER
    ).exists()


def test_demo_seed_leaves_an_existing_user_alone(db, alice):
    alice.set_password("alice-own-password-1")
    alice.save()

    seed()

    alice.refresh_from_db()
    assert alice.check_password("alice-own-password-1")
    assert Membership.objects.filter(organization__name="Acme Analytics", user=alice, role="owner").exists()


def test_demo_seed_refuses_to_run_where_the_settings_forbid_it_unless_forced(db, settings):
    settings.DEMO_SEED_ALLOWED = False

    with pytest.raises(CommandError, match="--force"):
        call_command("demo", "--seed", stdout=StringIO())

    assert counts() == (0, 0, 0)


def test_demo_prints_the_log_ins_without_creating_anything(db):
    out = StringIO()

    call_command("demo", stdout=out)

    assert "alice" in out.getvalue()
    assert DEMO_PASSWORD in out.getvalue()
    assert counts() == (0, 0, 0)
