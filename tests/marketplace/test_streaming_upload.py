"""The raw-body upload under ASGI, as uvicorn serves it: the body streams to storage while it arrives (never
spooled whole, never whole in memory), the limit and the owner are checked, and a refused body is not read."""

import asyncio
import hashlib
import tracemalloc
from pathlib import Path

import pytest

from marketplace import services
from marketplace.models import DatasetVersion
from platform_site.accounts.services import api_token_create
from platform_site.streaming import StreamingASGIHandler

pytestmark = pytest.mark.django_db(transaction=True)

PIECE = 64 * 1024  # what uvicorn hands over at a time


def put(path: str, *, pieces: int, token: str, content_type=b"application/octet-stream", length=None) -> dict:
    """PUT `pieces` blocks of CSV rows through the ASGI handler; the response and how many blocks it read."""
    header = b"a,b\n"
    row = b"1,2\n" * (PIECE // 4)
    size = len(header) + pieces * len(row)
    sent = {"pieces": 0, "status": None, "body": b"", "sha256": hashlib.sha256(header)}

    async def receive():
        if sent["pieces"] == 0:
            sent["pieces"] = 1
            return {"type": "http.request", "body": header, "more_body": True}
        if sent["pieces"] <= pieces:
            sent["pieces"] += 1
            sent["sha256"].update(row)
            return {"type": "http.request", "body": row, "more_body": sent["pieces"] <= pieces}
        await asyncio.Event().wait()  # the client waits for the response; no disconnect
        raise AssertionError("unreachable")

    async def send(message):
        if message["type"] == "http.response.start":
            sent["status"] = message["status"]
        else:
            sent["body"] += message.get("body", b"")

    path, _, query = path.partition("?")
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "PUT", "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
        "server": ("testserver", 80), "client": ("127.0.0.1", 50000),
        "headers": [(b"host", b"testserver"), (b"content-type", content_type),
                    (b"content-length", str(length if length is not None else size).encode()),
                    (b"authorization", f"Token {token}".encode())],
    }  # fmt: skip
    asyncio.run(asyncio.wait_for(StreamingASGIHandler()(scope, receive, send), timeout=60))
    return {**sent, "read": sent["pieces"] - 1, "size": size}


def test_a_raw_upload_streams_through_the_asgi_handler_in_little_memory(alice, media):
    dataset = services.dataset_create(owner=alice, title="Big", terms_preset="open", price_download=100)
    token = api_token_create(user=alice, name="upload")[1]
    tracemalloc.start()
    try:
        sent = put(
            f"/api/data/datasets/{dataset.pk}/versions/upload/?filename=big.csv", pieces=1024, token=token
        )
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sent["status"] == 201, sent["body"]
    version = DatasetVersion.objects.get()
    assert version.size == sent["size"] == 4 + 64 * 1024**2
    assert version.sha256 == sent["sha256"].hexdigest()
    assert Path(version.file.path).stat().st_size == version.size
    assert peak < 24 * 1024**2, f"{peak:,} bytes held for a 64 MiB body"


def test_a_refused_raw_upload_stops_reading_the_body_and_leaves_nothing(alice, mallory, media, settings):
    dataset = services.dataset_create(owner=alice, title="Big", terms_preset="open", price_download=100)
    url = f"/api/data/datasets/{dataset.pk}/versions/upload/?filename=big.csv"
    stranger = put(url, pieces=1024, token=api_token_create(user=mallory, name="x")[1])
    assert stranger["status"] == 404 and stranger["read"] < 1024, "a stranger's body is not read to its end"
    assert put(url, pieces=4, token="not-a-token")["status"] == 401

    token = api_token_create(user=alice, name="upload")[1]
    settings.UPLOAD_MAX_BYTES = 10 * PIECE
    declared = put(url, pieces=1024, token=token)
    assert declared["status"] == 400 and b"larger than the limit" in declared["body"]
    assert declared["read"] < 1024
    settings.UPLOAD_MAX_BYTES = 10**9
    assert put(url, pieces=4, token=token, content_type=b"text/csv")["status"] == 201, "spooled, still served"
    assert DatasetVersion.objects.count() == 1
    assert len([p for p in media.rglob("*") if p.is_file()]) == 1
