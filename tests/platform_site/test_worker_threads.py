"""Each Celery worker process caps PyTorch and BLAS threads at its share of the cores (or ML_THREADS)."""

import os
import uuid

import pytest

from platform_site.celery_app import app, ml_threads_per_process
from tests.processes import database_url_for_tests, start_worker, stop

CORES = len(os.sched_getaffinity(0))


def test_the_cores_are_shared_among_the_workers_processes_unless_configured():
    assert ml_threads_per_process(configured=0, cores=16, concurrency=4) == 4
    assert ml_threads_per_process(configured=0, cores=16, concurrency=3) == 5
    assert ml_threads_per_process(configured=0, cores=2, concurrency=8) == 1
    assert ml_threads_per_process(configured=0, cores=8, concurrency=1) == 8
    assert ml_threads_per_process(configured=3, cores=16, concurrency=4) == 3


def reports_from_a_worker(tmp_path, *, concurrency: int, pool: str, extra_env: dict[str, str]) -> list[dict]:
    queue = f"threads-{uuid.uuid4().hex[:8]}"  # its own queue: the suite's other worker must not answer
    env = {
        **os.environ,
        "DATABASE_URL": database_url_for_tests(),
        "DJANGO_SETTINGS_MODULE": "platform_site.settings_test",
        "PYTHONUNBUFFERED": "1",
        **extra_env,
    }
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env.pop(name, None)
    log = tmp_path / f"worker-{pool}.log"
    proc, _ = start_worker(env=env, log=log, queues=queue, concurrency=concurrency, pool=pool)
    try:
        results = [app.send_task("platform_site.ml_threads", queue=queue) for _ in range(2 * concurrency)]
        return [result.get(timeout=120) for result in results]
    except Exception:
        raise AssertionError(log.read_text()[-4000:]) from None
    finally:
        stop(proc)


@pytest.mark.slow
def test_a_prefork_worker_of_two_processes_gives_each_half_the_cores(transactional_db, tmp_path):
    expected = max(1, CORES // 2)
    reports = reports_from_a_worker(tmp_path, concurrency=2, pool="prefork", extra_env={"ML_THREADS": "0"})
    assert {r["torch"] for r in reports} == {expected}, reports
    assert all(r["blas"] == [expected] for r in reports), reports


@pytest.mark.slow
def test_ml_threads_overrides_the_share_in_a_threads_pool(transactional_db, tmp_path):
    reports = reports_from_a_worker(tmp_path, concurrency=2, pool="threads", extra_env={"ML_THREADS": "3"})
    assert {r["torch"] for r in reports} == {3}, reports
    assert all(r["blas"] == [3] for r in reports), reports
