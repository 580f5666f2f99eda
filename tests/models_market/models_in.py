"""Helpers for the tests of models coming in (training, uploads, minting): a small published dataset, licences,
jobs run in-process or waited for on the real worker."""

import numpy as np
from django.core.files.uploadedfile import SimpleUploadedFile

from marketplace import services as data
from marketplace.models import DatasetVersion
from platform_site.jobs.models import Job
from platform_site.jobs.services import job_execute
from tests.ledger.helpers import fund
from tests.processes import wait_for

RARE_INCOME = 987654.321  # one row's value that no result, card or error may carry


def dataset_csv(rows: int = 240, seed: int = 0) -> bytes:
    """x1, x2 (numbers), colour (text), income (a number the others do not depend on, one row far out), label
    (yes/no, from x1, x2 and colour) and amount (a number, from the same)."""
    rng = np.random.default_rng(seed)
    lines = ["x1,x2,colour,income,label,amount"]
    for i in range(rows):
        x1, x2 = rng.normal(size=2)
        colour = ("red", "green", "blue")[i % 3]
        income = RARE_INCOME if i == rows // 2 else round(30_000 + 5_000 * rng.normal(), 2)
        score = 1.5 * x1 - x2 + (0.8 if colour == "red" else 0.0) + rng.normal(scale=0.3)
        amount = 3 * x1 - 2 * x2 + (1.0 if colour == "blue" else 0.0) + rng.normal(scale=0.1)
        lines.append(f"{x1:.4f},{x2:.4f},{colour},{income},{'yes' if score > 0 else 'no'},{amount:.4f}")
    return ("\n".join(lines) + "\n").encode()


def published_version(owner, *, rows: int = 240, preset: str = "commercial", **overrides) -> DatasetVersion:
    """A published listing of `dataset_csv`, its statistics job run here, sold in both tiers."""
    dataset = data.dataset_create(
        owner=owner, title="Scores", terms_preset=preset, price_download=2_000, price_compute=1_000,
        privacy_budget=overrides.pop("privacy_budget", None), terms_overrides=overrides,
    )  # fmt: skip
    version = data.dataset_version_upload(
        dataset=dataset, actor=owner, upload=SimpleUploadedFile("scores.csv", dataset_csv(rows))
    )
    job_execute(job_id=version.stats_job_id, worker="test")
    data.dataset_publish(dataset=dataset, actor=owner)
    version.refresh_from_db()
    assert version.status == "ready", version.error
    return version


def buy(user, version: DatasetVersion, tier: str):
    fund(f"user:{user.pk}", 10_000)
    return data.license_purchase(buyer=user, dataset=version.dataset, tier=tier)


def run(job_id: int) -> Job:
    """Run a queued job here, as the worker would."""
    job_execute(job_id=job_id, worker="test")
    return Job.objects.get(pk=job_id)


def wait(job_id: int, timeout: float = 180) -> Job:
    """A job's end on the real worker."""
    wait_for(lambda: Job.objects.get(pk=job_id).is_finished, timeout=timeout, what=f"job {job_id}")
    return Job.objects.get(pk=job_id)


def train_body(version: DatasetVersion, **fields) -> dict:
    return {
        "dataset": version.dataset_id, "version": version.number, "name": "Scorer", "target": "label",
        "task": "classification", "algorithm": "logistic_regression", **fields,
    }  # fmt: skip
