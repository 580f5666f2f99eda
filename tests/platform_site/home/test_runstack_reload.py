"""`runstack --reload` (what `make dev` runs): uvicorn reloads itself, and watchfiles restarts the worker."""

import pytest
from django.core.management import call_command

from platform_site.home.management.commands.runstack import Command
from tests.processes import free_port

pytestmark = pytest.mark.django_db


class Started(Exception):
    pass


def commands(monkeypatch, *args: str) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {}

    def start(self, children) -> None:
        seen.update({child.name: child.argv for child in children})
        raise Started

    monkeypatch.setattr(Command, "_start", start)
    with pytest.raises(Started):
        call_command("runstack", "--port", str(free_port()), *args)
    return seen


def test_runstack_reload_restarts_the_web_server_and_the_worker_on_code_changes(monkeypatch, settings):
    argv = commands(monkeypatch, "--reload")

    assert argv["web"][argv["web"].index("--reload") + 1 : argv["web"].index("--reload") + 3] == [
        "--reload-dir",
        str(settings.BASE_DIR),
    ]
    assert argv["worker"][1:5] == ["-m", "watchfiles", "--filter", "python"]
    assert "celery -A platform_site worker" in argv["worker"][5]
    assert argv["worker"][6] == str(settings.BASE_DIR)


def test_runstack_without_reload_runs_the_processes_directly(monkeypatch):
    argv = commands(monkeypatch)

    assert "--reload" not in argv["web"]
    assert argv["worker"][1:4] == ["-m", "celery", "-A"]
