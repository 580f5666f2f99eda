import contextlib
import os
import sys
import threading

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_site.settings")

app = Celery("platform_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

_worker = None  # the WorkController of this process (inherited by its forked pool processes)
_worker_pid: int | None = None
_threads_set_in_pid: int | None = None
_threads_per_thread = 0  # set in a threads pool, whose task threads each cap their own OpenMP threads
_capped = threading.local()
_inherited_pools: list = []  # a forked child's copies of its parent's database pools, set aside


def ml_threads_per_process(*, configured: int, cores: int, concurrency: int) -> int:
    """Threads for torch and BLAS in one worker process: the configured number, else the cores shared out."""
    if configured > 0:
        return configured
    return max(1, cores // max(1, concurrency))


def set_ml_threads(threads: int) -> None:
    """Caps PyTorch's threads and every BLAS/OpenMP thread pool in this process at `threads`."""
    global _threads_set_in_pid
    from threadpoolctl import threadpool_limits

    # Read once by a library when it loads: PyTorch imported later takes its intra-op threads from these.
    for name in BLAS_THREAD_VARIABLES:
        os.environ[name] = str(threads)
    threadpool_limits(limits=threads)  # the BLAS/OpenMP libraries already loaded (numpy's, scikit-learn's)
    torch = sys.modules.get("torch")  # not imported here: a worker of the default queue never needs it
    if torch is not None:
        torch.set_num_threads(threads)
        # Only possible before the first parallel work; the intra-op threads above are what matter most.
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(threads)
    _threads_set_in_pid = os.getpid()


def _threads_for_this_worker() -> int:
    from django.conf import settings

    concurrency = getattr(_worker, "concurrency", 1)
    return ml_threads_per_process(
        configured=settings.ML_THREADS,
        cores=len(os.sched_getaffinity(0)),
        concurrency=concurrency if isinstance(concurrency, int) else 1,
    )


@signals.worker_init.connect
def _remember_the_worker(sender=None, **kwargs) -> None:
    global _worker, _worker_pid
    _worker, _worker_pid = sender, os.getpid()


@signals.worker_process_init.connect
def _init_pool_process(**kwargs) -> None:
    """In each pool process (a prefork child, or the solo pool's one process): fork-safe pool, ML threads."""
    if os.getpid() != _worker_pid:
        _forget_inherited_database_pools()
    set_ml_threads(_threads_for_this_worker())


def _forget_inherited_database_pools() -> None:
    # A forked child inherits the parent's connection pools, whose connections the parent still uses; closing
    # them here (as Celery's Django fixup would) would end the parent's sessions. Set them aside unclosed and
    # never collected (a pool's finalizer would try to stop the parent's threads); the child opens its own.
    from django.db import connections

    for conn in connections.all():
        pools = getattr(type(conn), "_connection_pools", None)
        inherited = pools.pop(conn.alias, None) if pools is not None else None
        if inherited is not None:
            _inherited_pools.append(inherited)
            conn.connection = None  # a pooled connection of the parent's, if this thread held one


@signals.worker_ready.connect
def _init_thread_pool_worker(**kwargs) -> None:
    # The threads pool sends no worker_process_init: its tasks run in this process, on threads of its own.
    global _threads_per_thread
    if (
        _threads_set_in_pid != os.getpid()
        and "prefork" not in getattr(_worker, "pool_cls", object).__module__
    ):
        import torch  # noqa: F401  (loaded before any task, so that each task thread can cap it first)

        _threads_per_thread = _threads_for_this_worker()
        set_ml_threads(_threads_per_thread)


@signals.task_prerun.connect
def _cap_threads_in_this_thread(**kwargs) -> None:
    # OpenMP's thread count (PyTorch's, and threadpoolctl's for OpenMP libraries) is per calling thread, so
    # a threads pool's task threads, which the main thread's cap does not reach, each take it once.
    if _threads_per_thread and not getattr(_capped, "done", False):
        set_ml_threads(_threads_per_thread)
        _capped.done = True


@app.task(name="platform_site.ml_threads")
def ml_threads() -> dict:
    """What this worker process runs ML with: `celery -A platform_site call platform_site.ml_threads`."""
    import torch
    from threadpoolctl import threadpool_info

    return {
        "pid": os.getpid(),
        "thread": threading.get_ident(),
        "torch": torch.get_num_threads(),
        "blas": sorted({pool["num_threads"] for pool in threadpool_info()}),
    }
