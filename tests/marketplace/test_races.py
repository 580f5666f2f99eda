"""Parallel requests on one listing through a live server on PostgreSQL: a lost race is a 409, never a 500, one
entry is written where one may be, and no file is left behind by a request that lost."""

import http.client
import json
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection

from ledger.models import Entry
from marketplace import services
from marketplace.models import Dataset, DatasetVersion, License
from platform_site.accounts.services import api_token_create
from platform_site.errors import Conflict
from tests.ledger.helpers import fund
from tests.marketplace.conftest import files_under
from tests.marketplace.test_pages import CSV

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL (CI runs it)"),
]


def token_for(user) -> str:
    return api_token_create(user=user, name="race")[1]


def published(owner) -> Dataset:
    dataset = services.dataset_create(
        owner=owner, title="Incomes", terms_preset="research", price_download=10_001, price_compute=4_000
    )
    version = services.dataset_version_upload(
        dataset=dataset, actor=owner, upload=SimpleUploadedFile("incomes.csv", CSV)
    )
    DatasetVersion.objects.filter(pk=version.pk).update(status="ready", stats={"rows": 50})
    return services.dataset_publish(dataset=dataset, actor=owner)


def in_parallel(live_server, n: int, method: str, path: str, token: str, body=b"", headers=None) -> list[int]:
    """`n` identical requests released together; their status codes."""
    url = urlparse(live_server.url)
    barrier = threading.Barrier(n)
    statuses: list[int] = []

    def one() -> None:
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        conn.connect()  # before the barrier: the live server's listen backlog is short
        barrier.wait()
        conn.request(method, path, body=body, headers={"Authorization": f"Token {token}", **(headers or {})})
        response = conn.getresponse()
        response.read()
        statuses.append(response.status)
        conn.close()

    threads = [threading.Thread(target=one) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(statuses) == n, "every request was answered"
    return statuses


def test_parallel_purchases_of_one_tier_by_one_buyer_sell_one_licence_and_answer_409(live_server, alice, bob):
    dataset = published(alice)
    fund(f"user:{bob.pk}", 1_000_000)
    statuses = in_parallel(
        live_server, 30, "POST", f"/api/data/datasets/{dataset.pk}/buy/", token_for(bob),
        body=json.dumps({"tier": "download"}), headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert sorted(set(statuses)) == [201, 409], statuses
    assert statuses.count(201) == 1
    assert License.objects.filter(buyer=bob).count() == 1
    assert Entry.objects.filter(kind="marketplace.license.granted").count() == 1
    call_command("verify_ledger", "--quiet")


def test_parallel_publishes_write_one_entry_and_answer_409(live_server, alice, media):
    dataset = services.dataset_create(owner=alice, title="Incomes", terms_preset="open", price_download=100)
    version = services.dataset_version_upload(
        dataset=dataset, actor=alice, upload=SimpleUploadedFile("incomes.csv", CSV)
    )
    DatasetVersion.objects.filter(pk=version.pk).update(status="ready", stats={"rows": 50})
    statuses = in_parallel(
        live_server, 10, "POST", f"/api/data/datasets/{dataset.pk}/publish/", token_for(alice)
    )
    assert sorted(statuses) == [200] + [409] * 9, statuses
    assert Entry.objects.filter(kind="marketplace.dataset.published").count() == 1
    call_command("verify_ledger", "--quiet")


def test_parallel_withdrawals_write_one_entry_and_answer_409(live_server, alice, media):
    dataset = published(alice)
    statuses = in_parallel(
        live_server, 10, "POST", f"/api/data/datasets/{dataset.pk}/withdraw/", token_for(alice)
    )
    assert sorted(statuses) == [200] + [409] * 9, statuses
    assert Entry.objects.filter(kind="marketplace.dataset.withdrawn").count() == 1
    call_command("verify_ledger", "--quiet")


@pytest.mark.parametrize("how", ["multipart", "raw"])
def test_parallel_uploads_each_get_a_version_number_and_keep_only_their_own_file(
    live_server, alice, media, how, settings
):
    settings.JOB_MAX_ACTIVE_PER_USER = 0  # each upload queues a statistics job: no limit on them here
    dataset = services.dataset_create(owner=alice, title="Incomes", terms_preset="open", price_download=100)
    if how == "multipart":
        boundary = "race7d1f"
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="incomes.csv"\r\n'
                f"Content-Type: text/csv\r\n\r\n"
            ).encode()
            + CSV
            + f"\r\n--{boundary}--\r\n".encode()
        )
        path = f"/api/data/datasets/{dataset.pk}/versions/"
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        method = "POST"
    else:
        body, method = CSV, "PUT"
        path = f"/api/data/datasets/{dataset.pk}/versions/upload/?filename=incomes.csv"
        headers = {"Content-Type": "application/octet-stream"}
    statuses = in_parallel(live_server, 8, method, path, token_for(alice), body=body, headers=headers)
    assert statuses == [201] * 8
    versions = DatasetVersion.objects.filter(dataset=dataset)
    assert sorted(v.number for v in versions) == list(range(1, 9))
    assert files_under(media) == sorted(Path(v.file.path) for v in versions), "one file per version, no other"
    assert all(Path(v.file.path).read_bytes() == CSV for v in versions)


def test_uploads_racing_a_withdrawal_are_refused_and_leave_no_file(live_server, alice, media):
    dataset = published(alice)
    before = files_under(media)
    started, withdrawn = threading.Event(), threading.Event()

    class Slow:
        name = "late.csv"

        def chunks(self, chunk_size=None):
            yield CSV[:10]
            started.set()
            withdrawn.wait(30)
            yield CSV[10:]

    outcome: list[str] = []

    def upload() -> None:
        try:
            services.dataset_version_upload(dataset=dataset, actor=alice, upload=Slow())
            outcome.append("uploaded")
        except Conflict as exc:
            outcome.append(exc.message)
        finally:
            connection.close()

    thread = threading.Thread(target=upload)
    thread.start()
    started.wait(30)
    statuses = in_parallel(
        live_server, 4, "POST", f"/api/data/datasets/{dataset.pk}/withdraw/", token_for(alice)
    )
    withdrawn.set()
    thread.join()
    assert sorted(statuses) == [200, 409, 409, 409]
    assert outcome == ["the listing was withdrawn during the upload"]
    assert files_under(media) == before, "the losing upload's file is removed"
    assert DatasetVersion.objects.filter(dataset=dataset).count() == 1
    call_command("verify_ledger", "--quiet")
