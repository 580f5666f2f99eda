"""End to end: the real party client, as separate processes over HTTP, against the live server and a real Celery
worker that aggregates; and `simulate_federation`'s parties as Celery tasks through the same client code."""

import os
import subprocess
import sys
import time

import pytest
from django.core.management import call_command

from federation.models import Federation, Round
from federation.simulation import digits_federation_create
from ledger.models import Entry
from ml.federated.splits import digits_task, iid_partitions, write_csv
from platform_site.accounts.services import api_token_create
from tests.factories import UserFactory
from tests.processes import ROOT, stop

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TARGET = 0.8


def cli(*args: str, token: str, server: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "federation.client", *args, "--server", server, "--token", token],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def test_three_parties_running_the_client_reach_the_target_accuracy_through_the_live_server_and_a_worker(
    live_server, celery_worker, alice, tmp_path
):
    federation = digits_federation_create(
        coordinator=alice, name="Digits", rounds=8, min_parties=3, target_value=TARGET
    )
    task = digits_task()
    shares = iid_partitions(len(task.y_train), 3, seed=0)
    runs = []
    for k, rows in enumerate(shares):
        user = UserFactory(username=f"party{k}")
        _, token = api_token_create(user=user, name="fl")
        key = tmp_path / f"party{k}.pem"
        data = write_csv(tmp_path / f"party{k}.csv", task, rows)
        for step in (["keygen", "--key", str(key)], ["register-key", "--key", str(key)],
                     ["join", str(federation.pk), "--key", str(key)]):  # fmt: skip
            done = cli(*step, token=token, server=live_server.url)
            assert done.returncode == 0, done.stderr
        runs.append((token, key, data))
    assert "pending" in done.stdout
    from federation import services

    for party in federation.parties.order_by("pk"):
        services.party_admit(federation=federation, party_id=party.pk, actor=alice)  # the third opens round 1

    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "federation.client",
                "run",
                str(federation.pk),
                "--data",
                str(data),
                "--key",
                str(key),
                "--seed",
                str(k),
                "--poll",
                "0.3",
                "--idle-timeout",
                "240",
                "--no-progress",
            ],
            cwd=ROOT,
            env={
                **os.environ,
                "PLATFORM_URL": live_server.url,
                "PLATFORM_TOKEN": token,
                "OMP_NUM_THREADS": "1",
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for k, (token, key, data) in enumerate(runs)
    ]
    outputs = []
    try:
        for proc in procs:
            out, _ = proc.communicate(timeout=280)
            outputs.append(out)
            assert proc.returncode == 0, out + Federation.objects.get(pk=federation.pk).error
    finally:
        for proc in procs:
            stop(proc, grace=5)

    federation.refresh_from_db()
    assert federation.status == Federation.Status.FINISHED
    rounds = list(Round.objects.filter(federation=federation).order_by("number"))
    assert rounds[-1].metrics["accuracy"] >= TARGET
    assert len(rounds) < 8  # the target ended it, not the round limit
    accepted = Entry.objects.filter(
        kind="federation.update.accepted", payload__federation=federation.pk
    ).count()
    assert accepted == 3 * len(rounds)
    for out in outputs:
        assert "round 1: trained on" in out and "accepted (ledger entry #" in out
        assert f"federation {federation.pk} finished" in out


def test_simulate_federation_runs_its_parties_as_celery_tasks_to_the_end_and_robust_aggregation_resists_a_byzantine_one(
    celery_worker, capsys
):
    started = time.monotonic()
    call_command(
        "simulate_federation", parties=3, byzantine=1, rounds=4, strategy="median", wait=True, timeout=240
    )
    out = capsys.readouterr().out
    federation = Federation.objects.latest("pk")
    assert federation.status == Federation.Status.FINISHED, out
    rounds = list(Round.objects.filter(federation=federation).order_by("number"))
    assert len(rounds) == 4
    assert rounds[-1].metrics["accuracy"] >= 0.75, out  # the poisoned third does not drag the median
    assert "(the first 1 byzantine)" in out
    assert "round 4: closed; " in out and "accuracy" in out
    assert f"federation {federation.pk} finished" in out
    assert time.monotonic() - started < 240
