"""Settings for the test suite: the same as the defaults, with state kept apart under var/test/.

A developer's `make run` may be serving from var/ at the same time; the suite's SQLite file, filesystem
queue and keys must not mix with it.
"""

import os
from pathlib import Path

os.environ.setdefault("VAR_DIR", str(Path(__file__).resolve().parent.parent / "var" / "test"))

from platform_site.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # tests only: speed
REALTIME_POLL_SECONDS = 0.2
WORKER_HEARTBEAT_SECONDS = 1.0
# Threads that serve websockets in the tests must not keep connections open past the test database's life.
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
