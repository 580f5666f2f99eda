"""The one place that sends to the channel layer."""

import asyncio
import logging
import os
import threading
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings

logger = logging.getLogger(__name__)

_loop: asyncio.AbstractEventLoop | None = None
_loop_pid = 0
_loop_lock = threading.Lock()


def _sender_loop() -> asyncio.AbstractEventLoop:
    """A long-lived event loop in a daemon thread of this process, so network layers reuse their connections."""
    global _loop, _loop_pid
    with _loop_lock:
        if _loop is None or _loop_pid != os.getpid():  # a forked worker child must not use its parent's loop
            _loop = asyncio.new_event_loop()
            _loop_pid = os.getpid()
            threading.Thread(target=_loop.run_forever, name="realtime-sender", daemon=True).start()
        return _loop


def job_group(job_id: int) -> str:
    return f"job.{job_id}"


def group_send(group: str, message: dict[str, Any]) -> None:
    """Best effort: a lost push only delays the browser until its next snapshot, so it never fails a caller."""
    if settings.REALTIME_POLL:
        return  # no channel layer shared with the web processes: their consumers read the rows themselves
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        if isinstance(layer, InMemoryChannelLayer):
            # Its queues belong to the server's own loop, which async_to_sync hands the call to.
            async_to_sync(layer.group_send)(group, message)
        else:
            asyncio.run_coroutine_threadsafe(layer.group_send(group, message), _sender_loop()).result(
                timeout=5
            )
    except Exception:
        logger.warning("realtime push to %s failed", group, exc_info=True)


def job_push(job_id: int, snapshot: dict[str, Any]) -> None:
    group_send(job_group(job_id), {"type": "job.update", "job": snapshot})
