"""`manage.py demo --seed`: demo users and organizations, then each app's own demo data; safe to run twice.

An app adds its demo data by defining `seed(*, stdout)` in `<app>/demo.py`. The steps run after the users and
organizations below exist, in INSTALLED_APPS order, so `ledger` comes before `marketplace` and so on. Each step
must be idempotent itself (look up what it would create and skip it), and must not rely on an outer transaction:
services open their own durable ones.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any, TextIO

from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils.module_loading import module_has_submodule
from django.utils.text import slugify

from platform_site.accounts.models import Membership, Organization
from platform_site.accounts.services import membership_set, organization_create, user_signup

DEMO_PASSWORD = "demo-pass-2026"  # noqa: S105  (published on purpose: it only ever guards demo data)


@dataclass(frozen=True)
class DemoUser:
    username: str
    display_name: str
    persona: str
    staff: bool = False


@dataclass(frozen=True)
class DemoOrganization:
    name: str
    owner: str
    description: str
    members: dict[str, str] = field(default_factory=dict)  # username -> role


DEMO_USERS = (
    DemoUser("alice", "Alice", "data owner, owner of Acme Analytics"),
    DemoUser("bob", "Bob", "buyer, member of Acme Analytics"),
    DemoUser("carol", "Carol", "owner of Northwind Bank"),
    DemoUser("admin", "Admin", "staff superuser, also at /admin/", staff=True),
)

DEMO_ORGANIZATIONS = (
    DemoOrganization(
        "Acme Analytics",
        owner="alice",
        description="A data shop that sells curated datasets and trains models on them.",
        members={"bob": Membership.Role.MEMBER},
    ),
    DemoOrganization(
        "Northwind Bank",
        owner="carol",
        description="A bank that shares fraud and risk models with its peers.",
    ),
)


def demo_login_lines() -> list[str]:
    """One line per demo log-in, for this command and `runstack` to print."""
    width = max(len(user.username) for user in DEMO_USERS)
    return [f"{user.username:<{width}}  {DEMO_PASSWORD}  ({user.persona})" for user in DEMO_USERS]


def seed_accounts(*, stdout: TextIO) -> None:
    """The demo users and organizations; anything that exists already is left as it is."""
    user_model = get_user_model()
    users: dict[str, Any] = {}
    for spec in DEMO_USERS:
        user = user_model.objects.filter(username__iexact=spec.username).first()
        if user is not None:
            stdout.write(f"  user {spec.username}: exists, left as it is")
        else:
            user = user_signup(
                username=spec.username,
                password=DEMO_PASSWORD,
                email=f"{spec.username}@example.com",
                display_name=spec.display_name,
            )
            if spec.staff:
                user.is_staff = user.is_superuser = True
                user.save(update_fields=["is_staff", "is_superuser"])
            stdout.write(f"  user {spec.username}: created ({spec.persona})")
        users[spec.username] = user

    for spec in DEMO_ORGANIZATIONS:
        owner = users[spec.owner]
        org = Organization.objects.filter(slug=slugify(spec.name)[:80]).first()
        if org is not None:
            stdout.write(f"  organization {spec.name}: exists, left as it is")
        else:
            org = organization_create(owner=owner, name=spec.name, description=spec.description)
            stdout.write(f"  organization {spec.name}: created, owned by {spec.owner}")
        for username, role in spec.members.items():
            member = users[username]
            if Membership.objects.filter(organization=org, user=member).exists():
                continue
            membership_set(organization=org, actor=owner, user=member, role=role)
            stdout.write(f"  organization {spec.name}: {username} added as {role}")


def demo_steps() -> list[tuple[str, Callable[..., None]]]:
    """The accounts step, then `seed` from every installed app that has a `demo` module."""
    steps: list[tuple[str, Callable[..., None]]] = [("accounts", seed_accounts)]
    for app_config in apps.get_app_configs():
        if module_has_submodule(app_config.module, "demo"):
            module = import_module(f"{app_config.name}.demo")
            seed = getattr(module, "seed", None)
            if not callable(seed):
                raise CommandError(f"{app_config.name}.demo has no seed(*, stdout) function")
            steps.append((app_config.label, seed))
    return steps


class Command(BaseCommand):
    help = "Create the demo users, organizations and each app's demo data (idempotent), and list the log-ins."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--seed", action="store_true", help="create the demo data that is missing")
        parser.add_argument(
            "--force",
            action="store_true",
            help="seed even on a site whose settings forbid it (DEMO_SEED_ALLOWED off, as in production)",
        )

    def handle(self, *args, seed: bool, force: bool, **options) -> None:
        if seed:
            if not settings.DEMO_SEED_ALLOWED and not force:
                raise CommandError(
                    "DEMO_SEED_ALLOWED is off, so this looks like a real site; the demo accounts have a published "
                    "password (and one is a superuser). Pass --force if you mean it."
                )
            for label, step in demo_steps():
                self.stdout.write(self.style.MIGRATE_HEADING(f"demo: {label}"))
                step(stdout=self.stdout)
        else:
            self.stdout.write("Nothing created: pass --seed to create the demo data that is missing.")
        self.stdout.write(self.style.SUCCESS("Demo log-ins:"))
        for line in demo_login_lines():
            self.stdout.write(f"  {line}")
