"""Parallel requests through a live server on PostgreSQL: one party's simultaneous submissions to a round make
exactly one update (the others 409, each ledgered), and simultaneous admissions admit once."""

import http.client
import json
import threading
import uuid
from urllib.parse import urlparse

import pytest
from django.core.management import call_command
from django.db import connection

from federation.models import Party, Rejection, Round, Update
from ledger.models import Entry
from ml.federated import tensors
from platform_site.accounts.services import api_token_create
from tests.federation.helpers import admitted, create, keyed, signed, small_delta

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL (CI runs it)"),
]


def encode_multipart(fields: dict) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        if isinstance(value, bytes):
            head = f'Content-Disposition: form-data; name="{name}"; filename="u.safetensors"\r\n'
            head += "Content-Type: application/octet-stream\r\n\r\n"
            data = value
        else:
            head, data = f'Content-Disposition: form-data; name="{name}"\r\n\r\n', str(value).encode()
        parts.append(f"--{boundary}\r\n".encode() + head.encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def in_parallel(live_server, requests: list[tuple[str, str, str, bytes, str]]) -> list[tuple[int, dict]]:
    """(method, path, token, body, content type) released together; their statuses and answers, in order."""
    url = urlparse(live_server.url)
    barrier = threading.Barrier(len(requests))
    results: list = [None] * len(requests)

    def one(i: int, method: str, path: str, token: str, body: bytes, content_type: str) -> None:
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
        conn.connect()
        barrier.wait()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        results[i] = (response.status, json.loads(response.read() or b"{}"))
        conn.close()

    threads = [threading.Thread(target=one, args=(i, *r)) for i, r in enumerate(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r is not None for r in results), "every request was answered"
    return results


def test_parallel_submissions_of_one_party_make_one_update(
    live_server, alice, bob, carol, settings, tmp_path
):
    settings.MEDIA_ROOT = tmp_path / "media"
    federation = create(alice)
    b, _c = admitted(federation, [keyed(bob), keyed(carol)])
    token = api_token_create(user=bob, name="race")[1]
    path = f"/api/federations/{federation.pk}/rounds/1/updates/"
    requests = []
    for i in range(6):
        delta = small_delta(federation, seed=i)  # six different, validly signed updates
        body, content_type = encode_multipart({
            "update": tensors.encode(delta), "num_examples": 100, "metrics": "{}", "key_id": b.key_id,
            "signature": signed(federation, 1, b, delta, 100),
        })  # fmt: skip
        requests.append(("POST", path, token, body, content_type))
    results = in_parallel(live_server, requests)
    statuses = sorted(status for status, _ in results)
    assert statuses == [201, 409, 409, 409, 409, 409], results
    assert Update.objects.filter(party=b.party).count() == 1
    assert Entry.objects.filter(kind="federation.update.accepted").count() == 1
    assert Rejection.objects.filter(status_code=409).count() == 5
    assert Entry.objects.filter(kind="federation.update.rejected").count() == 5
    assert Round.objects.get(federation=federation, number=1).status == "open"  # carol is still expected
    call_command("verify_ledger", "--quiet")


def test_parallel_admissions_admit_once_and_start_the_federation_once(
    live_server, alice, bob, carol, settings, tmp_path
):
    settings.MEDIA_ROOT = tmp_path / "media"
    federation = create(alice, min_parties=1)
    from federation import services

    parties = [
        services.party_join(federation=federation, user=u, key_id=keyed(u).key_id) for u in (bob, carol)
    ]
    token = api_token_create(user=alice, name="race")[1]
    requests = [
        ("POST", f"/api/federations/{federation.pk}/parties/{p.pk}/admit/", token, b"", "application/json")
        for p in parties
        for _ in range(3)
    ]
    results = in_parallel(live_server, requests)
    assert sorted(status for status, _ in results) == [200, 200, 409, 409, 409, 409], results
    assert Party.objects.filter(status="admitted").count() == 2
    assert Round.objects.filter(federation=federation).count() == 1
    assert Entry.objects.filter(kind="federation.round.opened").count() == 1
    call_command("verify_ledger", "--quiet")
