"""Health and operations figures for /healthz and the staff dashboard."""

from typing import Any

from django.conf import settings
from django.db import connection

from platform_site.jobs.selectors import worker_list_online

REQUIRED_QUEUES = ("default", "ml")


def _check(fn) -> dict[str, Any]:
    try:
        return {"ok": True, **(fn() or {})}
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}


def _database() -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return {"vendor": connection.vendor}


def _broker() -> dict[str, Any]:
    from platform_site.celery_app import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=3)
        return {
            "transport": conn.transport_cls
            if isinstance(conn.transport_cls, str)
            else str(conn.transport_cls)
        }


def _workers() -> dict[str, Any]:
    workers = worker_list_online()
    queues = sorted({q for w in workers for q in w.queues})
    missing = [q for q in REQUIRED_QUEUES if q not in queues]
    if not workers:
        raise RuntimeError("no Celery worker has sent a heartbeat recently")
    if missing:
        raise RuntimeError(f"no worker consumes the queue(s): {', '.join(missing)}")
    return {"count": len(workers), "queues": queues}


def _ledger() -> dict[str, Any]:
    from django.utils import timezone

    from ledger import chain, selectors
    from platform_site.keys import platform_signing_key

    file_key_id = chain.key_id_for(
        settings.LEDGER_ORIGIN, platform_signing_key().public_key().public_bytes_raw()
    )
    active = selectors.signing_key_list().filter(active=True).values_list("key_id", flat=True).first()
    if active is not None and active != file_key_id:
        raise RuntimeError(f"LEDGER_KEY_FILE holds key {file_key_id} but the ledger signs with {active}")
    checkpoint = selectors.checkpoint_latest()
    size = selectors.ledger_size()
    return {
        "signing_key_id": file_key_id,
        "size": size,
        "head": bytes(selectors.entry_get(seq=size - 1).entry_hash).hex() if size else None,
        "checkpoint_size": checkpoint.tree_size if checkpoint else None,
        "checkpoint_age_s": round((timezone.now() - checkpoint.created_at).total_seconds())
        if checkpoint
        else None,
    }


def health_checks() -> dict[str, dict[str, Any]]:
    return {
        "database": _check(_database),
        "broker": _check(_broker),
        "worker": _check(_workers),
        "ledger": _check(_ledger),
    }


def ops_mode() -> dict[str, str]:
    return {
        "database": connection.vendor,
        "broker": "redis" if settings.REDIS_URL else "filesystem",
        "channel_layer": "redis" if settings.REDIS_URL else "in-memory (websocket reads job rows)",
    }
