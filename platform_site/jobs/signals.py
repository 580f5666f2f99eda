"""Worker heartbeats: each Celery worker keeps a row fresh, so health checks work on any broker."""

import os
import threading

from celery.signals import worker_ready, worker_shutdown
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

_stop = threading.Event()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _beat(hostname: str, queues: list[str]) -> None:
    from platform_site.jobs.services import job_requeue_orphans, worker_heartbeat

    started_at = timezone.now()
    while not _stop.is_set():
        try:
            close_old_connections()
            worker_heartbeat(hostname=hostname, queues=queues, pid=os.getpid(), started_at=started_at)
            # A pool process killed (for memory) leaves its job running on a live worker: requeue it here.
            job_requeue_orphans(hostname=hostname, alive=pid_alive)
        except Exception:  # noqa: S110  (a missed beat is retried on the next tick)
            pass
        _stop.wait(settings.WORKER_HEARTBEAT_SECONDS)


@worker_ready.connect
def start_heartbeat(sender, **kwargs) -> None:
    hostname = sender.hostname
    queues = sorted(q.name for q in sender.task_consumer.queues)
    threading.Thread(target=_beat, args=(hostname, queues), name="heartbeat", daemon=True).start()


@worker_shutdown.connect
def stop_heartbeat(sender, **kwargs) -> None:
    from platform_site.jobs.services import worker_gone

    _stop.set()
    try:
        close_old_connections()
        worker_gone(hostname=sender.hostname)
    except Exception:  # noqa: S110  (the row then ages out and the sweep removes it)
        pass
