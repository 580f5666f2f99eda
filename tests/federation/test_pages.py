"""The federation pages: the list, the creation form, a federation's page with its parties, admission queue,
rounds chart, excluded updates, payouts and the caller's own submissions."""

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from federation.models import Federation, Party
from platform_site.jobs.models import Job
from platform_site.jobs.services import job_execute
from tests.federation.helpers import (
    admitted,
    create,
    csv_bytes,
    digits,
    keyed,
    schema,
    small_delta,
    submit,
    trained_delta,
)
from tests.ledger.helpers import fund

pytestmark = pytest.mark.django_db


def logged_in(client, user):
    client.force_login(user)
    return client


def test_the_list_and_a_federation_page_show_it_to_anyone(client, alice):
    federation = create(alice)
    page = client.get("/federated/")
    assert page.status_code == 200 and federation.name in page.content.decode()
    detail = client.get(f"/federated/{federation.pk}/")
    assert (
        detail.status_code == 200 and "Round 1 opens when 2 parties are admitted" in detail.content.decode()
    )
    assert client.get("/federated/999999/").status_code == 404


def test_the_coordinator_creates_a_federation_with_the_form(client, alice):
    fund(f"user:{alice.pk}", 10_000)
    import json

    X, y = digits()[2:]
    body = {
        "name": "Form made", "schema": json.dumps(schema()), "hidden": "16", "activation": "relu", "dropout": "0",
        "optimizer": "sgd", "lr": "0.05", "batch_size": "32", "local_epochs": "1", "proximal_mu": "0",
        "strategy": "fedavg", "options": "{}", "update_norm_bound": "50", "rounds": "3", "min_parties": "2",
        "round_deadline": "30", "target_metric": "accuracy", "target_value": "0.9", "reward_pool": "50.00",
        "validation": SimpleUploadedFile("v.csv", csv_bytes(X[:50], y[:50])),
    }  # fmt: skip
    response = logged_in(client, alice).post("/federated/new/", body)
    assert response.status_code == 302, response.content.decode()[-2000:]
    federation = Federation.objects.get()
    assert federation.reward_pool == 5_000 and federation.round_deadline == 1_800
    body["strategy"], body["secure_aggregation"] = "median", "on"
    body["validation"] = SimpleUploadedFile("v.csv", csv_bytes(X[:50], y[:50]))
    refused = client.post("/federated/new/", body)
    assert refused.status_code == 200 and "secure aggregation" in refused.content.decode()
    assert Federation.objects.count() == 1
    # Naming the target instead of writing the schema: it is fitted on the validation rows.
    body.update(strategy="fedavg", schema="", target="digit", task="classification", name="Fitted")
    del body["secure_aggregation"]
    body["validation"] = SimpleUploadedFile("v.csv", csv_bytes(X[:80], y[:80]))
    fitted = client.post("/federated/new/", body)
    assert fitted.status_code == 302, fitted.content.decode()[-3000:]
    made = Federation.objects.get(name="Fitted")
    assert made.schema["target"]["name"] == "digit" and made.spec["input_width"] == len(
        made.schema["columns"]
    )
    body.update(target="nope", name="Nope")
    body["validation"] = SimpleUploadedFile("v.csv", csv_bytes(X[:80], y[:80]))
    assert "no column &quot;nope&quot;" in client.post("/federated/new/", body).content.decode()


def test_the_admission_queue_is_the_coordinators_and_admitting_works(client, alice, bob, mallory):
    federation = create(alice)
    member = keyed(bob)
    logged_in(client, bob).post(f"/federated/{federation.pk}/join/", {"key_id": member.key_id})
    party = Party.objects.get()
    assert party.status == "pending"
    client.logout()
    page = logged_in(client, mallory).get(f"/federated/{federation.pk}/").content.decode()
    assert "federation-admission-queue" not in page
    client.post(f"/federated/{federation.pk}/parties/{party.pk}/admit/")
    assert Party.objects.get().status == "pending"  # mallory's admission refused
    client.logout()
    page = logged_in(client, alice).get(f"/federated/{federation.pk}/").content.decode()
    assert "federation-admission-queue" in page
    client.post(f"/federated/{federation.pk}/parties/{party.pk}/admit/")
    assert Party.objects.get().status == "admitted"


def test_a_finished_federation_shows_its_chart_excluded_updates_payouts_and_submissions(
    client, alice, bob, carol, dora, django_assert_max_num_queries
):
    federation = create(alice, rounds=1, strategy="krum", options={"num_malicious": 1}, min_parties=3)
    members = admitted(federation, [keyed(bob), keyed(carol), keyed(dora)])
    for i, m in enumerate(members[:2]):
        delta, n, _ = trained_delta(federation, 1, i, 3)
        submit(federation, 1, m, delta, num_examples=n)
    poisoned = {k: (v * -10).astype(np.float32) for k, v in trained_delta(federation, 1, 2, 3)[0].items()}
    submit(federation, 1, members[2], poisoned, num_examples=200)
    for job in Job.objects.filter(status="queued"):
        job_execute(job_id=job.pk, worker="test")
    federation.refresh_from_db()
    assert federation.status == "finished", federation.error
    logged_in(client, dora)
    with django_assert_max_num_queries(25):  # whatever the rounds and parties: no query per row
        page = client.get(f"/federated/{federation.pk}/").content.decode()
    for marker in ("chart-round-metrics", "federation-rounds", "federation-excluded", "federation-payouts",
                   "federation-my-submissions", "outlier"):  # fmt: skip
        assert marker in page, marker


@pytest.mark.django_db(transaction=True)
def test_the_federation_websocket_sends_a_new_snapshot_when_a_round_opens(
    alice, bob, carol, settings, tmp_path
):
    from channels.db import database_sync_to_async
    from channels.testing import WebsocketCommunicator

    from platform_site.asgi import application
    from tests.conftest import run_async

    settings.MEDIA_ROOT = tmp_path / "media"
    federation = create(alice)
    members = [keyed(bob), keyed(carol)]

    async def follow() -> tuple[dict, dict]:
        communicator = WebsocketCommunicator(
            application, f"/ws/federations/{federation.pk}/", headers=[(b"origin", b"http://localhost")]
        )
        connected, _ = await communicator.connect()
        assert connected
        first = await communicator.receive_json_from(timeout=5)
        await database_sync_to_async(admitted)(federation, members)
        while True:  # a snapshot per change: joins, admissions, then the round
            later = await communicator.receive_json_from(timeout=10)
            if later["status"] == "running":
                break
        await communicator.disconnect()
        return first, later

    first, later = run_async(follow())
    assert first["status"] == "recruiting" and first["rounds"] == []
    assert later["rounds"][0]["number"] == 1 and later["fingerprint"] != first["fingerprint"]


def test_the_aggregation_jobs_page_names_its_federation_and_round(client, alice, bob, carol):
    federation = create(alice, rounds=2)
    members = admitted(federation, [keyed(bob), keyed(carol)])
    for i, m in enumerate(members):
        submit(federation, 1, m, small_delta(federation, seed=i))
    job = Job.objects.get(kind="federation.aggregate")
    job_execute(job_id=job.pk, worker="test")
    client.force_login(alice)  # the coordinator owns the round's job
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert federation.name in page and f"/federated/{federation.pk}/" in page
    listing = client.get("/jobs/").content.decode()
    assert federation.name in listing


@pytest.mark.parametrize("hidden", ["²", "16,\u0661", "1" * 5_000])
def test_layer_widths_that_are_not_ascii_numbers_are_a_form_error(hidden):
    from federation.forms import FederationForm

    form = FederationForm(data={"hidden": hidden})
    assert not form.is_valid() and "widths are whole numbers" in str(form.errors["hidden"])
