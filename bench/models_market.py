"""Model marketplace figures, one JSON line.

One small model (a logistic regression on 20 features), called with batches of 1 and of 100 rows by 8 concurrent
clients (keep-alive HTTP/1.1, one connection each), through five servers measured in the same run:

- **ours, metered**: `POST /api/models/versions/<id>/predict/` on the live server (uvicorn, as `make run`
  serves; an API-token call, so answered by models_market/fastpath.py ahead of Django's middleware), licence
  checked, reservation, signed receipt per call;
- **ours, metering off**: the same endpoint with MODELS_METERING=false (licence still checked);
- **MLflow**: `mlflow models serve --env-manager local -w 1` on the same coefficients, the `inputs` payload;
- **a minimal FastAPI endpoint** calling the same model, one uvicorn worker: the floor of an HTTP model server;
- **in-process**: the model's `predict` on a ready numpy batch, no HTTP.

Figures: requests/s, rows/s, p50 and p95 latency (ms) per server and batch; metered ÷ unmetered (goal >= 0.9)
and metered ÷ MLflow (goal >= 1.0) at batch 1. Ours is measured in BENCH_ROUNDS (5) alternating rounds of metered
and unmetered, each on a fresh server: its figures are the median round's, metered ÷ unmetered the median of the
rounds' ratios (each round's listed too). Then settlement (receipts settled per second by
`settle_pending`) and the web process's peak RSS with 50 small models cached against MODELS_CACHE_BYTES.

MLflow and FastAPI run from their own virtualenv (BENCH_MLFLOW_VENV, default var/bench-mlflow-venv, made on first
use with `pip install mlflow==3.17.* scikit-learn==<ours>`: about 850 MB, a few minutes); nothing of it is a
dependency of the platform. Our server uses PostgreSQL (BENCH_DATABASE_URL, default a scratch database
`bench_models` on 127.0.0.1) because eight concurrent metered callers write receipts. Sizes: BENCH_SECONDS per
measurement (default 8), BENCH_CLIENTS (8).
"""

import http.client
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECONDS = float(os.environ.get("BENCH_SECONDS", 8))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", 8))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 5))  # of metered and unmetered, alternating
WARM_SECONDS = 3.0
FEATURES = 20
SCRATCH = Path(tempfile.mkdtemp(prefix="bench-models-"))
VENV = Path(os.environ.get("BENCH_MLFLOW_VENV", ROOT / "var" / "bench-mlflow-venv"))
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://root@127.0.0.1:5432/bench_models")

sys.path.insert(0, str(ROOT))
os.environ["VAR_DIR"] = str(SCRATCH / "var")
os.environ["DATABASE_URL"] = DATABASE_URL
os.environ.pop("REDIS_URL", None)
os.environ["DJANGO_SETTINGS_MODULE"] = "platform_site.settings"
os.environ.setdefault("THROTTLE_EXEMPT_USERS", "bench-caller")


# ---------------------------------------------------------------------------------------------------- helpers


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(port: int, path: str, proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            conn.getresponse().read()
            return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{what} did not come up in {timeout:.0f} s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def load(
    port: int, path: str, body: bytes, headers: dict[str, str], rows: int, seconds: float = SECONDS
) -> dict:
    """CLIENTS threads, each on its own keep-alive connection, POST `body` for `seconds`; every answer must be a
    200. Requests/s, rows/s and latency percentiles."""
    latencies: list[list[float]] = [[] for _ in range(CLIENTS)]
    errors: list[str] = []
    start = threading.Barrier(CLIENTS + 1)
    stop_at = [0.0]

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        start.wait()
        mine = latencies[i]
        while time.perf_counter() < stop_at[0]:
            t0 = time.perf_counter()
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            mine.append(time.perf_counter() - t0)
            if response.status != 200 and len(errors) < 3:
                errors.append(f"{response.status}: {data[:200]!r}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + seconds
    began = time.perf_counter()
    start.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"{path}: {errors}")
    every = sorted(x for mine in latencies for x in mine)
    n = len(every)
    return {
        "requests_per_s": round(n / elapsed, 1),
        "rows_per_s": round(n * rows / elapsed),
        "p50_ms": round(1000 * every[n // 2], 2),
        "p95_ms": round(1000 * every[int(n * 0.95)], 2),
    }


def data(rows: int, seed: int = 1):
    import numpy as np

    return np.random.default_rng(seed).normal(size=(rows, FEATURES))


# ---------------------------------------------------------------------------------------------------- the model


def train_model():
    """The benchmark's model: a logistic regression on 20 features, trained by the platform's own ml/ code so
    that ours serves exactly what the others serve (its coefficients are handed to them as JSON)."""
    import numpy as np

    from ml.features import features
    from ml.supervised import train
    from ml.tabular import Categorical, Table

    X = data(2_000, seed=0)
    y = (X @ np.linspace(-1, 1, FEATURES) > 0).astype(int)
    columns = [f"x{i}" for i in range(FEATURES)]
    table = Table(
        columns=[*columns, "label"],
        numeric={c: X[:, i] for i, c in enumerate(columns)},
        categorical={"label": Categorical.from_values(["yes" if v else "no" for v in y])},
        n_rows=len(y),
    )
    split = features(table, "label", "classification", test_size=0.2, seed=0)
    trained = train(split.X_train, split.y_train, "classification", "logistic_regression", {})
    return trained.model, split.schema, columns


def standardized_coefficients(model, schema) -> dict:
    """The served model as plain numbers: scaling from the schema, then the logistic regression, so that MLflow
    and FastAPI compute exactly what ours computes (rows already numeric, nothing missing)."""
    columns = schema.to_json()["columns"]
    return {
        "center": [c.get("center", c.get("median", 0.0)) for c in columns],
        "scale": [c.get("scale", 1.0) for c in columns],
        "coef": model.coef_.tolist(),
        "intercept": model.intercept_.tolist(),
        "classes": [str(c) for c in schema.classes] or ["0", "1"],
        "clip": schema.to_json().get("clip"),
    }


# ---------------------------------------------------------------------------------------------------- the others


MLFLOW_SAVE = r"""
import json, sys
import numpy as np
import mlflow.pyfunc

spec = json.load(open(sys.argv[1]))

class Scaled(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        self.center = np.array(spec["center"]); self.scale = np.array(spec["scale"])
        self.coef = np.array(spec["coef"]); self.intercept = np.array(spec["intercept"])
        self.clip = spec["clip"]
    def predict(self, context, model_input, params=None):
        X = (np.asarray(model_input, dtype=float) - self.center) / self.scale
        if self.clip: X = np.clip(X, -self.clip, self.clip)
        z = X @ self.coef.T + self.intercept
        return (z[:, 0] > 0).astype(int)

mlflow.pyfunc.save_model(sys.argv[2], python_model=Scaled())
"""

FASTAPI_APP = r"""
import json, os
import numpy as np
from fastapi import FastAPI, Request

spec = json.load(open(os.environ["BENCH_SPEC"]))
center, scale = np.array(spec["center"]), np.array(spec["scale"])
coef, intercept, clip = np.array(spec["coef"]), np.array(spec["intercept"]), spec["clip"]
app = FastAPI()

@app.post("/predict")
async def predict(request: Request):
    body = await request.json()
    X = (np.asarray(body["inputs"], dtype=float) - center) / scale
    if clip: X = np.clip(X, -clip, clip)
    z = X @ coef.T + intercept
    return {"predictions": (z[:, 0] > 0).astype(int).tolist()}

@app.get("/ping")
def ping():
    return {}
"""


def venv() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        import sklearn

        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "mlflow==3.17.*",
                f"scikit-learn=={sklearn.__version__}",
            ],
            check=True,
        )
    return python


def serve_mlflow(spec_file: Path) -> tuple[subprocess.Popen, int]:
    python = venv()
    model_dir = SCRATCH / "mlflow-model"
    script = SCRATCH / "mlflow_save.py"
    script.write_text(MLFLOW_SAVE)
    if not model_dir.exists():  # saved once, served once per batch size
        subprocess.run(
            [str(python), str(script), str(spec_file), str(model_dir)], check=True, capture_output=True
        )
    port = free_port()
    proc = subprocess.Popen(
        [str(VENV / "bin" / "mlflow"), "models", "serve", "-m", str(model_dir), "--env-manager", "local",
         "-w", "1", "-h", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=(SCRATCH / "mlflow.log").open("wb"),
        env={**os.environ, "PATH": f"{VENV / 'bin'}:{os.environ.get('PATH', '')}"},  # it starts `uvicorn`
    )  # fmt: skip
    wait_up(port, "/ping", proc, "mlflow models serve")
    return proc, port


def serve_fastapi(spec_file: Path) -> tuple[subprocess.Popen, int]:
    python = venv()
    (SCRATCH / "floor_app.py").write_text(FASTAPI_APP)
    port = free_port()
    proc = subprocess.Popen(
        [str(python), "-m", "uvicorn", "--app-dir", str(SCRATCH), "floor_app:app", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1", "--log-level", "warning"],
        env={**os.environ, "BENCH_SPEC": str(spec_file)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_up(port, "/ping", proc, "the FastAPI floor")
    return proc, port


def in_process(model, rows: int) -> dict:
    X = data(rows)
    n, began = 0, time.perf_counter()
    while time.perf_counter() - began < min(SECONDS, 3):
        model.predict(X)
        n += 1
    elapsed = time.perf_counter() - began
    return {"calls_per_s": round(n / elapsed), "rows_per_s": round(n * rows / elapsed)}


# ---------------------------------------------------------------------------------------------------- ours


def fresh_database() -> None:
    """An empty `bench_models` database, migrated (PostgreSQL only: the URL names it)."""
    import psycopg

    name = DATABASE_URL.rsplit("/", 1)[1]
    admin = DATABASE_URL.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def seed(model, schema, extra_models: int) -> dict:
    """The owner's version of the model, minted and listed (perpetual licence, 1 minor unit a call), the
    caller's licence and funds and API key; and `extra_models` more small versions for the memory figure."""
    import hashlib

    from django.core.files.base import ContentFile
    from django.db import transaction

    from ledger import services as ledger
    from ml.supervised import model_to_bytes
    from models_market import services
    from models_market.models import ModelAsset, ModelVersion
    from platform_site.accounts.services import api_token_create, user_signup

    owner = user_signup(username="bench-owner", password=secrets.token_urlsafe(24))
    caller = user_signup(username="bench-caller", password=secrets.token_urlsafe(24))
    kind, data = model_to_bytes(model)

    def version(name: str, blob: bytes) -> ModelVersion:
        asset = ModelAsset.objects.create(creator=owner, name=name, task="classification")
        v = ModelVersion(asset=asset, number=1, status="ready", origin="uploaded", format=kind,
                         algorithm="logistic_regression", artifact_sha256=hashlib.sha256(blob).hexdigest(),
                         size=len(blob), schema=schema.to_json(), created_by=owner)  # fmt: skip
        v.artifact.save(f"bench-{asset.pk}.skops", ContentFile(blob), save=False)
        v.save()
        with transaction.atomic():
            services.token_mint(version=v, owner=owner, royalty_bp=0, metadata={})
        return v

    served = version("Bench model", data)
    services.token_offer_set(
        token=served.token, actor=owner, price_perpetual=100, price_per_call=1, listed=True
    )
    with transaction.atomic():
        ledger.mint(destination=ledger.account_name(user=caller), amount=10**9, actor=ledger.TREASURY,
                    reason="benchmark funds")  # fmt: skip
    services.license_purchase(buyer=caller, token=served.token, kind="perpetual")
    extras = [version(f"Extra {i}", data).pk for i in range(extra_models)]
    _, key = api_token_create(user=caller, name="bench")
    return {"version": served.pk, "key": key, "extras": extras}


def serve_ours(metering: bool) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "MODELS_METERING": "true" if metering else "false", "DEBUG": "false",
           "THROTTLE_EXEMPT_USERS": "bench-caller", "MODELS_SETTLE_BATCH": str(10**9)}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
         "platform_site.asgi:application"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=(SCRATCH / "web.log").open("ab"),
    )  # fmt: skip
    wait_up(port, "/healthz", proc, "our web server")
    return proc, port


def settlement_rate() -> dict:
    """Every receipt the metered runs left, settled in batches of MODELS_SETTLE_BATCH-sized entries."""
    from models_market.models import Receipt
    from models_market.services import settle_pending

    pending = Receipt.objects.filter(settlement__isnull=True).count()
    began = time.perf_counter()
    entries = 0
    while settle_pending(limit=500) is not None:
        entries += 1
    elapsed = time.perf_counter() - began
    return {
        "receipts": pending,
        "entries": entries,
        "receipts_per_s": round(pending / elapsed) if elapsed else None,
    }


MEMORY_PROBE = r"""
import json, os, resource, sys
import django
django.setup()
from models_market import runtime
from models_market.models import ModelVersion
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for pk in json.loads(sys.argv[1]):
    runtime.model_for(ModelVersion.objects.get(pk=pk))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rss_before_mb": round(before / 1024, 1), "peak_rss_mb": round(after / 1024, 1),
                  **runtime.cache_info()}))
"""


def memory(ids: list[int]) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, json.dumps(ids)], cwd=ROOT, env=os.environ, capture_output=True,
        text=True, check=True,
    )  # fmt: skip
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    figures["cache_within_limit"] = figures["bytes"] <= figures["limit"]
    return figures


def main() -> None:
    fresh_database()
    model, schema, columns = train_model()
    seeded = seed(model, schema, extra_models=50)
    spec_file = SCRATCH / "spec.json"
    spec_file.write_text(json.dumps(standardized_coefficients(model, schema)))
    figures: dict = {"clients": CLIENTS, "seconds": SECONDS, "rounds": ROUNDS, "features": FEATURES}

    for batch in (1, 100):
        X = data(batch)
        ours_body = json.dumps(
            {"rows": [dict(zip(columns, map(float, row), strict=True)) for row in X]}
        ).encode()
        theirs_body = json.dumps({"inputs": X.tolist()}).encode()
        ours_headers = {"Content-Type": "application/json", "Authorization": f"Token {seeded['key']}"}
        json_headers = {"Content-Type": "application/json"}
        path = f"/api/models/versions/{seeded['version']}/predict/"
        row = figures[f"batch_{batch}"] = {}
        # Metered and unmetered in alternating rounds (this VM's speed drifts from minute to minute): each
        # figure is the round with the median requests/s, and the ratio the median of the rounds' ratios.
        rounds: dict[str, list[dict]] = {"metered": [], "unmetered": []}
        for i in range(ROUNDS):
            order = ("metered", "unmetered") if i % 2 == 0 else ("unmetered", "metered")
            for name in order:
                proc, port = serve_ours(name == "metered")
                try:
                    # Warm: the model loaded, the connections made.
                    load(port, path, ours_body, ours_headers, batch, seconds=WARM_SECONDS)
                    rounds[name].append(load(port, path, ours_body, ours_headers, batch))
                finally:
                    stop(proc)
        for name, runs in rounds.items():
            row[name] = sorted(runs, key=lambda r: r["requests_per_s"])[len(runs) // 2]
        ratios = [m["requests_per_s"] / u["requests_per_s"] for m, u in zip(*rounds.values(), strict=True)]
        row["metered_over_unmetered_rounds"] = [round(r, 3) for r in ratios]
        proc, port = serve_mlflow(spec_file)
        try:
            load(port, "/invocations", theirs_body, json_headers, batch)
            row["mlflow"] = load(port, "/invocations", theirs_body, json_headers, batch)
        finally:
            stop(proc)
        proc, port = serve_fastapi(spec_file)
        try:
            load(port, "/predict", theirs_body, json_headers, batch)
            row["fastapi"] = load(port, "/predict", theirs_body, json_headers, batch)
        finally:
            stop(proc)
        row["in_process"] = in_process(model, batch)
        row["metered_over_unmetered"] = round(sorted(ratios)[len(ratios) // 2], 3)
        row["metered_over_mlflow"] = round(
            row["metered"]["requests_per_s"] / row["mlflow"]["requests_per_s"], 3
        )
    figures["settlement"] = settlement_rate()
    figures["memory_50_models"] = memory(seeded["extras"])
    from django.core.management import call_command

    call_command("verify_ledger", "--quiet")
    figures["ledger_verified"] = True
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
