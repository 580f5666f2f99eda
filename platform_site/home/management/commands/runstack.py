"""`manage.py runstack`: the ASGI server, one Celery worker and Celery beat, started and stopped together."""

import contextlib
import ctypes
import os
import select
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from platform_site.home.management.commands.demo import DEMO_USERS, demo_login_lines

PR_SET_PDEATHSIG = 1


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen | None = None
    pump: threading.Thread | None = field(default=None, repr=False)


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec hook so that a child gets SIGTERM if runstack itself is killed outright (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None

    def hook() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return hook


class Command(BaseCommand):
    help = (
        "Run the web server (uvicorn), one Celery worker (queues default and ml) and Celery beat together; "
        "Ctrl-C stops them all."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--host", default="127.0.0.1", help="address the web server binds to (default 127.0.0.1)"
        )
        parser.add_argument(
            "--port", type=int, default=8000, help="port the web server listens on (default 8000)"
        )
        parser.add_argument("--concurrency", type=int, default=2, help="worker processes (default 2)")
        parser.add_argument(
            "--queues", default="default,ml", help="queues the worker consumes (default default,ml)"
        )
        parser.add_argument(
            "--reload",
            action="store_true",
            help="restart the web server and the worker when a Python file changes (for development)",
        )
        parser.add_argument(
            "--grace",
            type=float,
            default=10.0,
            help="seconds to let children stop before killing them (default 10)",
        )

    def handle(
        self,
        *args,
        host: str,
        port: int,
        concurrency: int,
        queues: str,
        grace: float,
        reload: bool = False,
        **options,
    ) -> None:
        self._lock = threading.Lock()
        self._check_port_free(host, port)
        self.check_migrations()

        python = sys.executable
        celery = [python, "-m", "celery", "-A", "platform_site"]
        # Gossip, mingle and event heartbeats need broadcast, which the filesystem broker lacks; health checks
        # read the worker's heartbeat row in the database instead.
        worker = [*celery, "worker", "-Q", queues, "-l", "INFO", "-c", str(concurrency), "-n", "runstack@%h"]
        worker += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        web_reload: list[str] = []
        if reload:
            # uvicorn and watchfiles watch the checkout's Python files (both skip .venv, .git and __pycache__).
            web_reload = ["--reload", "--reload-dir", str(settings.BASE_DIR)]
            worker = [
                python,
                "-m",
                "watchfiles",
                "--filter",
                "python",
                shlex.join(worker),
                str(settings.BASE_DIR),
            ]
        children = [
            Child(
                "web",
                # uvicorn streams request bodies to the app; daphne holds a whole upload in memory first.
                [
                    python,
                    "-m",
                    "uvicorn",
                    "--host",
                    host,
                    "--port",
                    str(port),
                    *web_reload,
                    "platform_site.asgi:application",
                ],
            ),
            Child("worker", worker),
            Child(
                "beat",
                [*celery, "beat", "-l", "INFO", "-S", "django_celery_beat.schedulers:DatabaseScheduler"],
            ),
        ]

        received: list[int] = []

        def on_signal(signum: int, _frame) -> None:
            # Only a list append: a handler that takes a lock (Event.set) deadlocks when a second signal
            # re-enters it while it holds that lock. The wake-up pipe interrupts the wait below.
            received.append(signum)

        wake_read, wake_write = socket.socketpair()
        wake_read.setblocking(False)
        wake_write.setblocking(False)
        previous_wakeup = signal.set_wakeup_fd(wake_write.fileno(), warn_on_full_buffer=False)
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, on_signal)

        died: Child | None = None
        try:
            self._start(children)
            self._banner(host, port)
            while not received:
                readable, _, _ = select.select([wake_read], [], [], 0.5)
                if readable:
                    with contextlib.suppress(BlockingIOError):
                        wake_read.recv(4096)
                died = next((c for c in children if c.proc is not None and c.proc.poll() is not None), None)
                if died is not None:
                    break
        finally:
            # Signals that arrive from here on are only recorded (the handler stays): none interrupts the stop.
            self._stop(children, grace)
            signal.set_wakeup_fd(previous_wakeup)
            wake_read.close()
            wake_write.close()

        if died is not None:
            raise CommandError(
                f"{died.name} exited with status {died.proc.returncode}; stopped the others "
                f"(its command was: {' '.join(died.argv)})"
            )
        name = signal.Signals(received[0]).name if received else "a signal"
        self._say(f"runstack: stopped on {name}")

    def _check_port_free(self, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise CommandError(
                    f"cannot listen on {host}:{port}: {exc.strerror}; pick another --port"
                ) from exc

    def _start(self, children: list[Child]) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        preexec = _die_with_parent()
        # All processes first, then the output threads: forking while threads run is best avoided.
        for child in children:
            self._say(f"runstack: starting {child.name}: {' '.join(child.argv)}")
            child.proc = subprocess.Popen(  # noqa: S603  (our own interpreter and fixed arguments)
                child.argv,
                cwd=settings.BASE_DIR,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                # Its own process group: Ctrl-C reaches only runstack, which then stops each child once, in order.
                start_new_session=True,
                preexec_fn=preexec,
            )
        for child in children:
            child.pump = threading.Thread(
                target=self._pump,
                args=(child.name, child.proc.stdout),
                name=f"pump-{child.name}",
                daemon=True,
            )
            child.pump.start()

    def _pump(self, name: str, stream: IO[bytes]) -> None:
        with stream:
            for raw in iter(stream.readline, b""):
                self._say(f"{name:<6}| {raw.decode(errors='replace').rstrip()}")

    def _say(self, line: str) -> None:
        with self._lock, contextlib.suppress(OSError, ValueError):
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def _banner(self, host: str, port: int) -> None:
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{port}/"
        try:
            seeded = get_user_model().objects.filter(username=DEMO_USERS[0].username).exists()
        except DatabaseError:
            seeded = False
        lines = ["", f"  The platform is at {url}  (API docs {url}api/docs/, health {url}healthz)", ""]
        if seeded:
            lines += ["  Demo log-ins:", *(f"    {line}" for line in demo_login_lines())]
        else:
            lines += ["  No demo data yet: run `manage.py demo --seed` for the demo log-ins."]
        lines += ["", "  Ctrl-C stops the web server, the worker and beat.", ""]
        self._say("\n".join(lines))

    def _stop(self, children: list[Child], grace: float) -> None:
        running = [c for c in children if c.proc is not None and c.proc.poll() is None]
        for child in running:
            self._say(f"runstack: stopping {child.name} (pid {child.proc.pid})")
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(timeout=max(deadline - time.monotonic(), 0.0))
        for child in children:
            if child.proc is None:
                continue
            if child.proc.poll() is None:
                self._say(f"runstack: {child.name} did not stop within {grace:g}s; killing it")
            # The whole group: a worker killed outright would leave its pool processes behind.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.proc.pid, signal.SIGKILL)
            child.proc.wait()
        for child in children:
            if child.pump is not None:
                child.pump.join(timeout=2)
