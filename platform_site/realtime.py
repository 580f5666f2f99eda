"""The one place that sends to the channel layer."""

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)


def job_group(job_id: int) -> str:
    return f"job.{job_id}"


def group_send(group: str, message: dict[str, Any]) -> None:
    """Best effort: a lost push only delays the browser until its next snapshot, so it never fails a caller."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:
        logger.warning("realtime push to %s failed", group, exc_info=True)


def job_push(job_id: int, snapshot: dict[str, Any]) -> None:
    group_send(job_group(job_id), {"type": "job.update", "job": snapshot})
