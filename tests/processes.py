"""Real processes for the tests: a Celery worker on the test database, the whole stack in a scratch folder."""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def database_url_for_tests() -> str:
    """A DATABASE_URL naming the test database that pytest-django created (not the configured one)."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def wait_for(
    predicate: Callable[[], bool], *, timeout: float, what: str, proc: subprocess.Popen | None = None
):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with {proc.returncode}")
        if predicate():
            return
        time.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def start_worker(
    *, env: dict[str, str], log: Path, queues: str = "default,ml", concurrency: int = 1, pool: str = "prefork"
) -> tuple[subprocess.Popen, str]:
    hostname = f"pytest-{uuid.uuid4().hex[:8]}@localhost"
    cmd = [
        sys.executable, "-m", "celery", "-A", "platform_site", "worker", "-Q", queues, "-n", hostname,
        "-c", str(concurrency), "-P", pool, "--without-gossip", "--without-mingle", "-l", "INFO",
    ]  # fmt: skip
    # Its own process group, so that a test can kill the worker together with its pool children.
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )
    return proc, hostname


def stop(proc: subprocess.Popen, *, grace: float = 15) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def embedded_env(var_dir: Path) -> dict[str, str]:
    """The environment of a fresh `make run`: no DATABASE_URL, no REDIS_URL, state under `var_dir`."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(VAR_DIR=str(var_dir), DJANGO_SETTINGS_MODULE="platform_site.settings", PYTHONUNBUFFERED="1")
    return env
