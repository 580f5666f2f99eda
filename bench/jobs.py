"""Job pipeline overhead: the ML self-test through a real Celery worker vs. the same training called directly.

Runs on the embedded default in a scratch folder (SQLite + filesystem queue), or on PostgreSQL/Redis when
DATABASE_URL/REDIS_URL are set (then it uses that database: point it at a scratch one). Prints one JSON line.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
JOBS = int(os.environ.get("BENCH_JOBS", 5))
EPOCHS = int(os.environ.get("BENCH_EPOCHS", 20))

sys.path.insert(0, str(ROOT))
scratch = tempfile.mkdtemp(prefix="bench-jobs-")
os.environ.setdefault("VAR_DIR", scratch)
os.environ["DJANGO_SETTINGS_MODULE"] = "platform_site.settings"

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

from ml.selftest import train_selftest  # noqa: E402
from platform_site.accounts.models import User  # noqa: E402
from platform_site.jobs.models import Job, WorkerHeartbeat  # noqa: E402
from platform_site.jobs.services import job_submit  # noqa: E402


def main() -> None:
    call_command("migrate", verbosity=0)
    owner, _ = User.objects.get_or_create(username="bench")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "platform_site", "worker", "-Q", "default,ml", "-c", "1",
         "--without-gossip", "--without-mingle", "-n", "bench@%h", "-l", "WARNING"],
        cwd=ROOT, env=os.environ.copy(),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not WorkerHeartbeat.objects.filter(hostname__startswith="bench@").exists():
            if time.monotonic() > deadline or worker.poll() is not None:
                raise SystemExit("the worker did not start")
            time.sleep(0.2)

        direct = []
        for _ in range(JOBS):
            t0 = time.perf_counter()
            train_selftest(epochs=EPOCHS)
            direct.append(time.perf_counter() - t0)

        pickup, total = [], []
        for _ in range(JOBS):
            t0 = time.perf_counter()
            job = job_submit(owner=owner, kind="ml.selftest", params={"epochs": EPOCHS})
            started = None
            while True:
                job.refresh_from_db()
                if started is None and job.status != "queued":
                    started = time.perf_counter()
                if job.is_finished:
                    break
                time.sleep(0.01)
            if job.status != "succeeded":
                raise SystemExit(f"job failed: {job.error}")
            total.append(time.perf_counter() - t0)
            pickup.append(started - t0)
        Job.objects.filter(owner=owner).delete()
    finally:
        worker.terminate()
        worker.wait(30)

    from django.db import connection

    print(
        json.dumps(
            {
                "bench": "jobs",
                "database": connection.vendor,
                "broker": "redis" if os.environ.get("REDIS_URL") else "filesystem",
                "jobs": JOBS,
                "epochs": EPOCHS,
                "direct_train_s_median": round(statistics.median(direct), 3),
                "job_total_s_median": round(statistics.median(total), 3),
                "queue_pickup_s_median": round(statistics.median(pickup), 3),
                "job_overhead_s_median": round(statistics.median(total) - statistics.median(direct), 3),
                "job_over_direct_ratio": round(statistics.median(total) / statistics.median(direct), 3),
            }
        )
    )


if __name__ == "__main__":
    try:
        main()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
