"""Uploads with numbers near or beyond float64's range: the statistics job ends `ready` with finite JSON, or
`failed` with a reason that names the column, never stuck on `processing`."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from marketplace import services
from marketplace.models import DatasetVersion
from platform_site.jobs.services import job_execute

pytestmark = pytest.mark.django_db


def upload(owner, name: str, data: bytes) -> DatasetVersion:
    dataset = services.dataset_create(
        owner=owner, title="Extremes", description="", terms_preset="research",
        price_download=10_000, price_compute=None,
    )  # fmt: skip
    version = services.dataset_version_upload(
        dataset=dataset, actor=owner, upload=SimpleUploadedFile(name, data)
    )
    job_execute(job_id=version.stats_job_id, worker="test")
    version.refresh_from_db()
    return version


@pytest.mark.parametrize(
    "data",
    [
        b"a,b\n" + b"".join(b"%s,%d\n" % (b"1e200" if i % 2 else b"-1e200", i) for i in range(30)),
        b"a,b\n" + b"".join(b"1e308,%d\n" % i for i in range(30)),
        b"a,b\n" + b"".join(b"%s,%d\n" % (b"1.7e308" if i == 0 else b"-1.7e308", i) for i in range(30)),
        b"a,b\n" + b"".join(b"NaN,%d\n" % i for i in range(30)),
    ],
    ids=["plus-minus-1e200", "1e308", "near-the-limit", "nan"],
)
def test_numbers_near_the_float_limit_give_a_ready_version_with_finite_statistics(alice, data):
    version = upload(alice, "extremes.csv", data)
    assert version.status == DatasetVersion.Status.READY, version.error
    json.dumps(version.stats, allow_nan=False)
    json.dumps(version.features, allow_nan=False)


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("beyond-float64.csv", b"a,b\n1,2\n1e400,3\n", 'column "a", row 2: the number 1e400 is too large'),
        (
            "beyond-float64.jsonl",
            b'{"a": 1}\n{"a": 1' + b"0" * 400 + b"}\n",
            'column "a", row 2: the number 100000000000',
        ),
    ],
)
def test_a_number_beyond_float64_fails_the_version_with_its_column_and_row(alice, name, data, reason):
    version = upload(alice, name, data)
    assert version.status == DatasetVersion.Status.FAILED
    assert reason in version.error
