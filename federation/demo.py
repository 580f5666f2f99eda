"""Demo data for federated learning: carol coordinates a federation on handwritten digits that five simulated
parties (sim-party-1..5, each holding its own share of the rows) train together over five rounds with
Multi-Krum, one of them poisoning its updates (sign-flipped x10), which every round excludes. The parties run the
real client through the API in-process, and the aggregation jobs run here (`job_execute`, the code a worker
runs), so the federation has finished when the site starts: rounds with their charts, an excluded party, payouts
by contribution from the escrowed pool, and the final model minted in the model marketplace."""

from django.contrib.auth import get_user_model

from federation.models import Federation, Round
from platform_site.jobs.services import job_execute

PARTIES = 5
ROUNDS = 5
MAX_STEPS = 200


def seed(*, stdout) -> None:
    from federation.simulation import digits_federation_create, parties_enrol, party_runner

    if Federation.objects.exists():
        stdout.write("federation: already seeded")
        return
    carol = get_user_model().objects.get(username="carol")
    federation = digits_federation_create(
        coordinator=carol, name="Handwritten digits, five sites", rounds=ROUNDS, min_parties=PARTIES,
        description="Five sites train one digit recogniser without pooling their scans; one of them is "
        "poisoning its updates, and Multi-Krum leaves it out of every round.",
        strategy="multi_krum", options={"num_malicious": 1}, reward_pool=20_000,
    )  # fmt: skip
    parties_enrol(federation=federation, parties=PARTIES, byzantine=1, admit_as=carol)
    done: dict[int, list[int]] = {i: [] for i in range(PARTIES)}
    for _ in range(MAX_STEPS):
        federation.refresh_from_db()
        if federation.status != Federation.Status.RUNNING:
            break
        for rnd in Round.objects.filter(federation=federation, status=Round.Status.AGGREGATING):
            if rnd.job_id is not None:
                job_execute(job_id=rnd.job_id, worker="demo")
        for index in range(PARTIES):
            runner = party_runner(federation.pk, index, done[index])
            runner.step()
            done[index] = sorted(runner.done)
    federation.refresh_from_db()
    stdout.write(f"federation: “{federation.name}” {federation.status} after {ROUNDS} rounds")
