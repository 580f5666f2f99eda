"""`runstack` stops cleanly however many signals it gets: every child exits and the port is free again."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.processes import ROOT, embedded_env, free_port, wait_for

pytestmark = pytest.mark.slow

GRACE = 10
STORM_SECONDS = 5


def descendants(pid: int) -> set[int]:
    """The process and everything below it, through /proc (Linux)."""
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        found.add(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo += [int(child) for child in (task / "children").read_text().split()]
    return found


def alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process tree from /proc")
def test_runstack_stops_every_child_and_frees_its_port_under_a_burst_of_signals(tmp_path):
    env = embedded_env(tmp_path / "var")
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert migrate.returncode == 0, migrate.stderr
    port = free_port()
    log = tmp_path / "stack.log"
    stack = subprocess.Popen(
        [sys.executable, "manage.py", "runstack", "--port", str(port), "--concurrency", "1",
         "--grace", str(GRACE)],
        cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    pids: set[int] = set()
    try:
        wait_for(lambda: port_open(port), timeout=120, what="the web server", proc=stack)
        wait_for(lambda: len(descendants(stack.pid)) >= 5, timeout=60, what="the worker's pool", proc=stack)
        pids = descendants(stack.pid) - {stack.pid}

        # SIGTERM, then SIGHUP and SIGINT in quick succession, over and over while it stops: a handler that
        # took a lock (Event.set) is sooner or later re-entered while it holds it, and hangs.
        storm_until = time.monotonic() + STORM_SECONDS
        while stack.poll() is None and time.monotonic() < storm_until:
            for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(stack.pid, signum)

        try:
            stack.wait(GRACE + 15)
        except subprocess.TimeoutExpired:
            pytest.fail(f"runstack hung on stop\n--- log ---\n{log.read_text()[-3000:]}")
        wait_for(lambda: not any(alive(pid) for pid in pids), timeout=GRACE, what="every child to exit")
        assert port_free(port)
        assert "runstack: stopped on SIG" in log.read_text()
    finally:
        for pid in [stack.pid, *pids]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        stack.wait(10)
