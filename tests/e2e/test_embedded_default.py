"""The embedded default, as `make run` starts it on a fresh machine: SQLite, the filesystem queue, no Redis."""

import json
import subprocess
import sys

import pytest

from tests.processes import ROOT, embedded_env, free_port, stop

pytestmark = pytest.mark.slow


def manage(env, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_a_job_runs_end_to_end_on_sqlite_and_the_filesystem_queue(tmp_path):
    env = embedded_env(tmp_path / "var")
    assert manage(env, "migrate", "--noinput").returncode == 0
    port = free_port()
    log = tmp_path / "stack.log"
    stack = subprocess.Popen(
        [sys.executable, "manage.py", "runstack", "--port", str(port)],
        cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        probe = manage(
            env, "jobprobe", "--url", f"http://127.0.0.1:{port}", "--wait-healthy", "--timeout", "180"
        )
    finally:
        stop(stack, grace=30)
    assert probe.returncode == 0, (
        f"{probe.stdout}\n{probe.stderr}\n--- stack log ---\n{log.read_text()[-4000:]}"
    )
    # The last top-level JSON document printed is the finished job.
    job, _ = json.JSONDecoder().raw_decode(probe.stdout[probe.stdout.rindex("\n{") + 1 :])
    assert job["status"] == "succeeded"
    assert len(job["metrics"]) == 2
    assert (tmp_path / "var" / "db.sqlite3").exists()
    assert (tmp_path / "var" / "queue").is_dir()
    assert stack.returncode is not None, "runstack stopped when asked"
