"""Demo data for the marketplace: three generated datasets on sale, two purchases and a finished analysis.

The statistics and analysis jobs run here, in-process (`job_execute`, the code a worker runs), so the listings
are ready before the site starts; the worker later skips them as finished.
"""

import io

import numpy as np
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile

from marketplace import services
from marketplace.models import Dataset, DatasetVersion
from platform_site.jobs.services import job_execute

CITIES = ("Oslo", "Lyon", "Porto", "Gdansk", "Turin")


def _csv(header: list[str], columns: list) -> bytes:
    out = io.StringIO()
    out.write(",".join(header) + "\n")
    for row in zip(*columns, strict=True):
        out.write(",".join(row) + "\n")
    return out.getvalue().encode()


def air_quality(rng: np.random.Generator, rows: int = 3_000) -> bytes:
    city = rng.choice(CITIES, size=rows)
    base = {name: i * 6.0 for i, name in enumerate(CITIES)}
    pm25 = np.array([base[c] for c in city]) + rng.gamma(2.0, 4.0, rows)
    no2 = pm25 * 1.6 + rng.normal(0, 5, rows)
    temp = rng.normal(14, 7, rows)
    humidity = np.clip(rng.normal(65, 15, rows), 5, 100)
    fmt = lambda a: [f"{x:.1f}" for x in a]  # noqa: E731
    pm25_text = fmt(pm25)
    for i in rng.choice(rows, size=rows // 50, replace=False):
        pm25_text[i] = ""  # sensors drop out: missing values
    return _csv(
        ["city", "pm25", "no2", "temperature_c", "humidity_pct"],
        [city, pm25_text, fmt(no2), fmt(temp), fmt(humidity)],
    )


def customer_segments(rng: np.random.Generator, rows: int = 4_000) -> bytes:
    centers = np.array([[25, 18_000, 4], [41, 52_000, 12], [63, 31_000, 7], [35, 95_000, 20]])
    segment = rng.integers(0, len(centers), rows)
    spread = np.array([4, 6_000, 2])
    points = centers[segment] + rng.normal(size=(rows, 3)) * spread
    channel = rng.choice(["web", "store", "app"], size=rows, p=[0.5, 0.3, 0.2])
    return _csv(
        ["age", "annual_spend", "visits_per_month", "channel"],
        [[f"{x:.0f}" for x in points[:, 0]], [f"{x:.2f}" for x in points[:, 1]],
         [f"{max(x, 0):.0f}" for x in points[:, 2]], channel],
    )  # fmt: skip


def sensor_readings(rng: np.random.Generator, rows: int = 5_000) -> bytes:
    values = rng.normal(size=(rows, 6))
    values[rng.choice(rows, size=25, replace=False)] += rng.normal(8, 2, size=(25, 6))  # faults to find
    return _csv([f"sensor_{i}" for i in range(6)], [[f"{x:.4f}" for x in values[:, i]] for i in range(6)])


LISTINGS = (
    {
        "title": "European city air quality, hourly",
        "description": "PM2.5, NO2, temperature and humidity from street sensors in five cities. "
        "About 2% of PM2.5 readings are missing where a sensor dropped out.",
        "tags": ["environment", "air-quality", "cities"],
        "preset": "research",
        "price_download": 25_000,
        "price_compute": 8_000,
        "preview": True,
        "make": air_quality,
        "file": "air_quality.csv",
    },
    {
        "title": "Retail customer segments",
        "description": "Age, yearly spend, visits and channel for 4,000 loyalty-card customers. "
        "Sold for compute only: cluster it without seeing a single customer.",
        "tags": ["retail", "customers", "clustering"],
        "preset": "commercial",
        "price_download": None,
        "price_compute": 15_000,
        "preview": False,
        "make": customer_segments,
        "file": "customers.csv",
    },
    {
        "title": "Industrial sensor readings with faults",
        "description": "Six vibration sensors on a production line, with a few injected faults for "
        "anomaly detection.",
        "tags": ["industry", "sensors", "anomaly-detection"],
        "preset": "open",
        "price_download": 5_000,
        "price_compute": None,
        "preview": True,
        "make": sensor_readings,
        "file": "sensors.csv",
    },
)


def seed(*, stdout) -> None:
    users = {u.username: u for u in get_user_model().objects.filter(username__in=["alice", "bob"])}
    if len(users) < 2:
        return
    alice, bob = users["alice"], users["bob"]
    if Dataset.objects.filter(owner=alice, title=LISTINGS[0]["title"]).exists():
        stdout.write("  marketplace: demo listings exist already")
        return
    rng = np.random.default_rng(2026)
    datasets = []
    for spec in LISTINGS:
        dataset = services.dataset_create(
            owner=alice, title=spec["title"], description=spec["description"], tags=spec["tags"],
            terms_preset=spec["preset"], price_download=spec["price_download"],
            price_compute=spec["price_compute"], preview_enabled=spec["preview"],
        )  # fmt: skip
        version = services.dataset_version_upload(
            dataset=dataset, actor=alice, upload=SimpleUploadedFile(spec["file"], spec["make"](rng))
        )
        job_execute(job_id=version.stats_job_id, worker="demo")
        version.refresh_from_db()
        if version.status != DatasetVersion.Status.READY:
            stdout.write(f"  marketplace: {spec['title']}: statistics failed: {version.error}")
            continue
        datasets.append(services.dataset_publish(dataset=dataset, actor=alice))
    if len(datasets) < len(LISTINGS):
        return
    air, customers, _sensors = datasets
    services.license_purchase(buyer=bob, dataset=air, tier="download")
    services.license_purchase(buyer=bob, dataset=customers, tier="compute")
    job = services.analysis_submit(user=bob, dataset=customers, params={"analysis": "kmeans", "k": 4})
    job_execute(job_id=job.pk, worker="demo")
    stdout.write(
        f"  marketplace: {len(datasets)} listings by alice; bob bought two licenses and clustered "
        f"the customer segments with differential privacy (job {job.pk})"
    )
