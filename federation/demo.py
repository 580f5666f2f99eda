"""Demo data for federated learning: carol's federation on the digits task, run to its end by four simulated
parties through the party's own client (`federation.simulation`: each a user with a key, an API token and its
share of the rows), one of them byzantine (its updates sign-flipped x10), which Multi-Krum excludes every round.
Aggregation runs here, in-process (`job_execute`, the code a worker runs), so the federation's page shows its
rounds, the excluded updates, the contributions, the payouts and the minted model when the site starts."""

from django.contrib.auth import get_user_model

from federation.models import Federation
from ledger.models import Account
from platform_site.jobs.models import Job
from platform_site.jobs.services import job_execute

NAME = "Handwritten digits, trained together"
PARTIES, BYZANTINE, ROUNDS = 4, 1, 5
POOL = 20_000  # 200 tokens


def seed(*, stdout) -> None:
    if Federation.objects.filter(name=NAME).exists():
        stdout.write("  federation: already seeded")
        return
    carol = get_user_model().objects.filter(username="carol").first()
    if carol is None:
        return
    from federation.jobkinds import AGGREGATE_KIND
    from federation.services import federation_create
    from federation.simulation import folder_for, parties_enrol, party_runner
    from ml.federated.splits import digits_task, write_csv

    account = Account.objects.filter(name=f"user:{carol.pk}").first()
    pool = POOL if account is not None and account.balance >= POOL else 0
    task = digits_task()
    folder = folder_for(0)
    folder.mkdir(parents=True, exist_ok=True)
    validation = write_csv(folder / "demo-validation.csv", task, test=True)
    with open(validation, "rb") as fh:
        from django.core.files import File

        federation = federation_create(
            coordinator=carol, name=NAME,
            description="Four banks' scanned cheques, never pooled: each trains at home and signs its update.",
            schema=task.schema.to_json(), spec=task.spec(hidden=(32,)),
            recipe={"optimizer": "sgd", "lr": 0.1, "batch_size": 32, "local_epochs": 2, "proximal_mu": 0.0},
            strategy="multi_krum", options={"num_malicious": BYZANTINE}, update_norm_bound=1000.0,
            rounds=ROUNDS, min_parties=PARTIES, round_deadline=3600, target_metric="accuracy", target_value=0.9,
            reward_pool=pool, validation=File(fh, name="validation.csv"),
        )  # fmt: skip
    validation.unlink(missing_ok=True)
    parties_enrol(federation=federation, parties=PARTIES, byzantine=BYZANTINE, admit_as=carol)
    runners = [party_runner(federation.pk, index, []) for index in range(PARTIES)]
    for _ in range(ROUNDS * 3):
        federation.refresh_from_db()
        if not federation.is_active:
            break
        for runner in runners:
            runner.step()
        for job in Job.objects.filter(kind=AGGREGATE_KIND, status=Job.Status.QUEUED).order_by("pk"):
            job_execute(job_id=job.pk, worker="demo")
    federation.refresh_from_db()
    rounds = federation.round_set.filter(status="closed").count()
    stdout.write(f"  federation: {NAME!r} {federation.status} after {rounds} rounds")
