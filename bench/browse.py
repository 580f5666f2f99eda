"""Browsing and searching 10,000 listings under 16 concurrent clients; one JSON line.

Makes BENCH_LISTINGS (10,000) published listings (200 sellers, a version with statistics each, tags and words
from small vocabularies, prices, 3,000 licences spread over them) in a scratch PostgreSQL database: DATABASE_URL
if given (it is migrated, and its listings are replaced by the benchmark's), else a database `bench_browse`
made afresh on 127.0.0.1. Then serves the site as in production, DEBUG off, under uvicorn with BENCH_WORKERS (2)
workers (REDIS_URL, if set, carries the cache), and runs BENCH_CLIENTS (16) clients, each on its own keep-alive
connection, for BENCH_SECONDS (20) per scenario after a short warm-up:

- browse: `/data/`, its pages 2 to 5 and every offered sort, in turn;
- search: `/data/?q=WORD` for 40 words of the vocabulary, some with a sort or a tag filter.

Figures per scenario: requests per second, p50 and p95 latency in milliseconds, errors (goal: p95 < 150 ms and
at least 150 requests/s), and the server's CPU time per request. Before the load, each path is requested once
on its own, with nothing cached yet: the median and slowest of those first requests say what a page costs when
a change to the listings has just moved the cache's key. The clients run in this process (threads); the
machine's cores are shared by the clients, the web workers and PostgreSQL. Progress goes to stderr.
"""

import http.client
import json
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
LISTINGS = int(os.environ.get("BENCH_LISTINGS", 10_000))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", 16))
SECONDS = float(os.environ.get("BENCH_SECONDS", 20))
WORKERS = int(os.environ.get("BENCH_WORKERS", 2))
SELLERS = 200
LICENCES = 3_000
GOAL_P95_MS, GOAL_RPS = 150, 150

WORDS = [
    *("birds", "weather", "income", "loans", "credit", "survey", "census", "traffic", "energy", "solar"),
    *("wind", "rainfall", "retail", "sales", "housing", "prices", "hospital", "patients", "school", "grades"),
    *("crops", "harvest", "fisheries", "shipping", "ports", "flights", "delays", "electricity", "demand"),
    *("water", "quality", "air", "pollution", "forest", "cover", "river", "flow", "soil", "samples"),
    *("election", "turnout", "crime", "reports", "tourism", "arrivals", "mobile", "usage", "payments"),
    *("fraud", "insurance", "claims", "wages", "employment"),
]
TAGS = ["finance", "ecology", "climate", "health", "transport", "energy", "retail", "agriculture", "public"]
SORTS = ["", "newest", "oldest", "price", "-price", "title", "most_sold", "rows"]

SCRATCH = Path(tempfile.mkdtemp(prefix="bench-browse-"))
sys.path.insert(0, str(ROOT))
if not os.environ.get("DATABASE_URL"):
    import psycopg

    with psycopg.connect("postgresql://root@127.0.0.1:5432/postgres", autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS bench_browse WITH (FORCE)")
        admin.execute("CREATE DATABASE bench_browse")
    os.environ["DATABASE_URL"] = "postgres://root@127.0.0.1:5432/bench_browse"
os.environ.update(
    DJANGO_SETTINGS_MODULE="platform_site.settings",
    DEBUG="false",
    VAR_DIR=str(SCRATCH / "var"),
    SECRET_KEY=secrets.token_urlsafe(50),
    ALLOWED_HOSTS="127.0.0.1,localhost",
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def stats(rng: random.Random) -> dict:
    """What the statistics job stores for a table of six numeric columns."""
    rows = rng.randint(10, 2_000_000)
    column = {
        "type": "numeric",
        "count": rows,
        "missing": 0,
        "min": 0.0,
        "max": 1.0,
        "mean": 0.5,
        "std": 0.29,
    }
    columns = [{"name": f"c{j}", **column, "suppressed": False} for j in range(6)]
    return {"rows": rows, "n_columns": 6, "truncated": False, "min_count": 5, "columns": columns}


def seed() -> None:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import transaction
    from django.utils import timezone

    from marketplace import services
    from marketplace.models import Dataset, DatasetVersion, License
    from platform_site.accounts.models import User

    call_command("migrate", verbosity=0)
    rng = random.Random(0)
    terms = services.terms_build(preset="research")
    with transaction.atomic():  # one commit for the whole shelf
        License.objects.filter(dataset__title__startswith="bench ").delete()
        Dataset.objects.filter(title__startswith="bench ").update(current_version=None)
        DatasetVersion.objects.filter(dataset__title__startswith="bench ").delete()
        Dataset.objects.filter(title__startswith="bench ").delete()
        sellers = [User.objects.get_or_create(username=f"bench-seller-{i}")[0] for i in range(SELLERS)]
        buyers = [User.objects.get_or_create(username=f"bench-buyer-{i}")[0] for i in range(LICENCES // 100)]
        now = timezone.now()
        datasets = Dataset.objects.bulk_create(
            Dataset(
                owner=sellers[i % SELLERS],
                title=f"bench {' '.join(rng.sample(WORDS, 3))} {i}",
                description=" ".join(rng.choices(WORDS, k=25)),
                tags=sorted(rng.sample(TAGS, rng.randint(1, 3))),
                status=Dataset.Status.PUBLISHED,
                price_download=rng.choice([None, rng.randint(100, 100_000)]),
                price_compute=rng.randint(100, 50_000),
                terms=terms,
            )
            for i in range(LISTINGS)
        )
        # Spread creation times over a year, as a real shelf would have them.
        for dataset in datasets:
            dataset.created_at = now - timezone.timedelta(minutes=rng.randint(0, 525_600))
        Dataset.objects.bulk_update(datasets, ["created_at"], batch_size=2_000)
        versions = DatasetVersion.objects.bulk_create(
            DatasetVersion(
                dataset=dataset,
                number=1,
                file=f"datasets/{dataset.pk}/data.csv",
                format="csv",
                size=10_000,
                sha256="0" * 64,
                status=DatasetVersion.Status.READY,
                published_seq=1,
                stats=stats(rng),
            )
            for dataset in datasets
        )
        for dataset, version in zip(datasets, versions, strict=True):
            dataset.current_version = version
        Dataset.objects.bulk_update(datasets, ["current_version"], batch_size=2_000)
        sold = rng.sample(range(LISTINGS), LICENCES // 3)
        License.objects.bulk_create(
            License(
                buyer=buyer,
                dataset=datasets[i],
                version=versions[i],
                tier="download",
                price=100,
                terms=terms,
                terms_hash="0" * 64,
                entry_seq=1,
            )
            for i in sold
            for buyer in rng.sample(buyers, rng.randint(1, 5))
        )
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(port: int) -> None:
    for _ in range(300):
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/data/")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("the server did not start")


def server_cpu_seconds(pid: int) -> float:
    """CPU time of the server process and its workers (Linux /proc)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if entry.name == str(pid) or fields[1] == str(pid):  # fields[1]: the parent's pid
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def first_requests(port: int, paths: list[str]) -> dict:
    """Each path requested once, one at a time, before anything is cached: what a page costs when it is not."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    times = []
    for path in paths:
        start = time.perf_counter()
        connection.request("GET", path)
        connection.getresponse().read()
        times.append(1000 * (time.perf_counter() - start))
    return {"median": round(statistics.median(times), 1), "max": round(max(times), 1)}


def load(port: int, paths: list[str], seconds: float) -> dict:
    """`CLIENTS` threads, each on one keep-alive connection, requesting `paths` in turn from a random start."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def client(seed: int) -> None:
        rng = random.Random(seed)
        i = rng.randrange(len(paths))
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[float] = []
        failed = 0
        while time.perf_counter() < stop:
            path = paths[i % len(paths)]
            i += 1
            start = time.perf_counter()
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            mine.append(time.perf_counter() - start)
            failed += not ok
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    began = time.perf_counter()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    latencies.sort()
    quantiles = statistics.quantiles(latencies, n=100)
    return {
        "requests": len(latencies),
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(quantiles[49] * 1000, 1),
        "p95_ms": round(quantiles[94] * 1000, 1),
        "errors": errors[0],
    }


def main() -> None:
    log(f"seeding {LISTINGS} listings in {os.environ['DATABASE_URL'].rsplit('/', 1)[-1]}")
    seed()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), "--workers", str(WORKERS),
         "--log-level", "warning", "--no-access-log", "platform_site.asgi:application"],
        cwd=ROOT, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=(SCRATCH / "server.log").open("w"),
    )  # fmt: skip
    try:
        wait_up(port)
        rng = random.Random(1)
        browse = ["/data/"] + [f"/data/?page={p}" for p in range(2, 6)]
        browse += [f"/data/?{urlencode({'sort': s})}" for s in SORTS if s]
        search = []
        for word in rng.sample(WORDS, 40):
            query = {"q": word}
            if rng.random() < 0.25:
                query["sort"] = rng.choice(SORTS[1:])
            if rng.random() < 0.15:
                query["tag"] = rng.choice(TAGS)
            search.append(f"/data/?{urlencode(query)}")
        figures: dict = {"bench": "browse", "listings": LISTINGS, "clients": CLIENTS, "workers": WORKERS,
                         "seconds": SECONDS, "redis": bool(os.environ.get("REDIS_URL"))}  # fmt: skip
        for name, paths in (("browse", browse), ("search", search)):
            figures[f"{name}_first_request_ms"] = first_requests(port, paths)
            load(port, paths, min(3.0, SECONDS))  # warm-up: connections, plans, each worker's caches
            cpu = server_cpu_seconds(server.pid)
            figures[name] = load(port, paths, SECONDS)
            cpu = server_cpu_seconds(server.pid) - cpu
            figures[name]["server_cpu_ms_per_request"] = round(
                1000 * cpu / max(figures[name]["requests"], 1), 2
            )
            log(f"{name}: {figures[name]}")
        figures["goal"] = {"p95_ms_below": GOAL_P95_MS, "rps_at_least": GOAL_RPS}
        figures["met"] = all(
            figures[n]["p95_ms"] < GOAL_P95_MS and figures[n]["rps"] >= GOAL_RPS and not figures[n]["errors"]
            for n in ("browse", "search")
        )
        print(json.dumps(figures))
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
