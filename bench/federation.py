"""Federated learning figures, one JSON line.

One task, three systems, in one run: scikit-learn's bundled `load_digits`, an 80/20 split (random_state=0),
standardized by a scaler fitted on the training part, its training rows shared among 10 parties IID and by a
Dirichlet(alpha=0.5) draw over each label; an MLP 64-128-10 (ReLU), local SGD lr 0.05, batch 32, 1 epoch, 20
rounds of FedAvg weighted by examples, the same initial weights (`ml.federated.local.initial_tensors(spec, 0)`)
and the same seeds and mini-batch order for every party in every system (party k's seed in round r is
`federation.client.seed_for(k, r)`; local training is `ml.federated.local.train_local` everywhere):

- **plain**: the floor, `ml.federated.simulate.plain_fedavg_loop`: in-process torch FedAvg, no framework, no I/O;
- **flower**: Flower 1.42's simulation engine (`flwr.simulation.run_simulation`, Ray backend, the Message API's
  FedAvg strategy with server-side evaluation), from its own virtualenv (BENCH_FLWR_VENV, default
  var/bench-flwr-venv, made on first use with `pip install 'flwr[simulation]==1.42.*' torch==2.13.0
  scikit-learn safetensors`: a few minutes); nothing of it is a dependency of the platform;
- **ours**: the platform in deployment shape: the live server (uvicorn with BENCH_FL_WEB_WORKERS processes, one
  per core by default, as the README's "many workers" section runs it), one real Celery worker aggregating on the
  `ml` queue, and the 10 parties as separate `python -m federation.client run` processes over HTTP, each update
  signed by the party's Ed25519 key, checked and ledgered; a party waits for the next round on a held look. PostgreSQL
  (BENCH_DATABASE_URL, default a scratch database `bench_federation`, dropped and made again) and Redis
  (BENCH_REDIS_URL, default index 13, emptied first).

Per system and split: seconds per round after the first (the first includes start-up; rounds 2..R-1, since our
last round also finishes the federation: contributions, payouts, the minted model), total seconds, the final
global model's test accuracy, and the peak RSS of its whole process tree (sampled every 50 ms; for "ours" the
server, the worker and the ten clients together). Then ours / Flower's s/round and ours - plain in accuracy.
Sizes: BENCH_FL_ROUNDS (20), BENCH_FL_PARTIES (10), BENCH_FL_SPLITS ("iid,dirichlet"), BENCH_FL_SYSTEMS
("plain,flower,ours"), BENCH_FL_POLL (the clients' poll interval, 0.2 s).
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ROUNDS = int(os.environ.get("BENCH_FL_ROUNDS", 20))
PARTIES = int(os.environ.get("BENCH_FL_PARTIES", 10))
SPLITS = os.environ.get("BENCH_FL_SPLITS", "iid,dirichlet").split(",")
SYSTEMS = os.environ.get("BENCH_FL_SYSTEMS", "plain,flower,ours").split(",")
POLL = float(os.environ.get("BENCH_FL_POLL", 0.2))
WEB_WORKERS = int(os.environ.get("BENCH_FL_WEB_WORKERS", len(os.sched_getaffinity(0))))
ALPHA = 0.5
RECIPE = {"optimizer": "sgd", "lr": 0.05, "batch_size": 32, "local_epochs": 1, "proximal_mu": 0.0}
VENV = Path(os.environ.get("BENCH_FLWR_VENV", ROOT / "var" / "bench-flwr-venv"))
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://root@127.0.0.1:5432/bench_federation")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
SCRATCH = Path(tempfile.mkdtemp(prefix="bench-fl-"))


# ---------------------------------------------------------------------------------------------------- helpers


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class TreeRss:
    """The peak of the summed RSS of some processes and all their descendants, sampled every 50 ms."""

    def __init__(self) -> None:
        self.roots: list[int] = []
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> "TreeRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            tree, seen, todo = _children(), set(), list(self.roots)
            while todo:
                pid = todo.pop()
                if pid not in seen:
                    seen.add(pid)
                    todo += tree.get(pid, [])
            self.peak_kb = max(self.peak_kb, sum(_rss_kb(pid) for pid in seen))

    @property
    def peak_mb(self) -> float:
        return round(self.peak_kb / 1024, 1)


def figures(round_ends: list[float], start: float, accuracy: float, rss: TreeRss) -> dict:
    """s/round after the first (mean of rounds 2..R-1: the platform's last round also holds the federation's
    end, contributions, payouts and the minted model), the first and the last round, total seconds from
    `start`, accuracy, peak RSS."""
    durations = np.diff([start, *round_ends])
    return {
        "s_per_round": round(float(np.mean(durations[1:-1])), 4) if len(durations) > 2 else None,
        "first_round_s": round(float(durations[0]), 3),
        "last_round_s": round(float(durations[-1]), 3),
        "total_s": round(round_ends[-1] - start, 2),
        "accuracy": round(float(accuracy), 4),
        "peak_rss_mb": rss.peak_mb,
    }


# ---------------------------------------------------------------------------------------------------- the task


def prepare(split: str) -> Path:
    """The split's arrays (standardized as the schema does) and partitions in a folder every system reads."""
    from ml.federated.splits import digits_task, dirichlet_partitions, iid_partitions, write_csv

    task = digits_task()
    parts = (
        iid_partitions(len(task.y_train), PARTIES, seed=0)
        if split == "iid"
        else dirichlet_partitions(task.y_train, PARTIES, alpha=ALPHA, seed=0)
    )
    folder = SCRATCH / split
    folder.mkdir()
    cols = task.schema.columns
    center = np.array([c["center"] for c in cols])
    scale = np.array([c["scale"] for c in cols])
    np.savez(
        folder / "data.npz",
        X_train=((task.X_train - center) / scale).astype(np.float32),
        y_train=task.y_train,
        X_test=((task.X_test - center) / scale).astype(np.float32),
        y_test=task.y_test,
        sizes=np.array([len(p) for p in parts]),
        rows=np.concatenate(parts),
    )
    (folder / "config.json").write_text(
        json.dumps(
            {
                "spec": task.spec(),
                "recipe": RECIPE,
                "rounds": ROUNDS,
                "parties": PARTIES,
                "schema": task.schema.to_json(),
            }
        )
    )
    for k, rows in enumerate(parts):
        write_csv(folder / f"party-{k}.csv", task, rows)
    write_csv(folder / "test.csv", task, test=True)
    return folder


def load(folder: Path) -> tuple[dict, dict, list[np.ndarray]]:
    data = dict(np.load(folder / "data.npz"))
    parts = np.split(data["rows"], np.cumsum(data["sizes"])[:-1])
    return json.loads((folder / "config.json").read_text()), data, parts


# ---------------------------------------------------------------------------------------------------- plain


def plain_child(folder: Path, alpha: float | None) -> None:
    """The floor, in this process: `ml.federated.simulate.plain_fedavg_loop` (the platform's train_local and
    aggregate, torch on one thread), on the same shares, which the loop makes itself the same way."""
    from ml.federated.simulate import plain_fedavg_loop

    cfg, _, parts = load(folder)
    start = time.perf_counter()
    out = plain_fedavg_loop(rounds=cfg["rounds"], parties=cfg["parties"], alpha=alpha, seed=0, threads=1)
    if out["sizes"] != [len(p) for p in parts]:
        raise RuntimeError(f"the plain loop's shares {out['sizes']} are not the benchmark's")
    ends = list(start + np.cumsum(out["seconds"]))
    print(json.dumps({"start": start, "ends": ends, "accuracy": out["final_accuracy"]}))


# ---------------------------------------------------------------------------------------------------- flower


FLOWER_APP = r"""
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
import numpy as np, torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.simulation import run_simulation
from federation.client import seed_for
from ml.federated import local

folder = Path(sys.argv[1])
cfg = json.loads((folder / "config.json").read_text())
data = dict(np.load(folder / "data.npz"))
parts = np.split(data["rows"], np.cumsum(data["sizes"])[:-1])
spec, recipe = cfg["spec"], cfg["recipe"]
marks = []

def as_numpy(arrays):
    return {k: v.detach().cpu().numpy() for k, v in arrays.to_torch_state_dict().items()}

def as_record(tensors):
    return ArrayRecord({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()})

client_app = ClientApp()

@client_app.train()
def train(msg: Message, context: Context) -> Message:
    k = int(context.node_config["partition-id"])
    r = int(msg.content["config"]["server-round"])
    rows = parts[k]
    weights = as_numpy(msg.content["arrays"])
    result = local.train_local(spec=spec, global_tensors=weights, X=data["X_train"][rows],
                               y=data["y_train"][rows], recipe=recipe, seed=seed_for(k, r))
    new = {n: (weights[n].astype(np.float64) + result.delta[n]).astype(np.float32) for n in weights}
    reply = RecordDict({"arrays": as_record(new),
                        "metrics": MetricRecord({"num-examples": result.num_examples, **result.metrics})})
    return Message(content=reply, reply_to=msg)

server_app = ServerApp()

def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
    marks.append(time.perf_counter())
    m = local.evaluate(spec=spec, tensors=as_numpy(arrays), X=data["X_test"], y=data["y_test"])
    marks[-1] = (marks[-1], m["accuracy"])
    return MetricRecord(m)

@server_app.main()
def main(grid: Grid, context: Context) -> None:
    strategy = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=cfg["parties"],
                      min_available_nodes=cfg["parties"])
    strategy.start(grid=grid, initial_arrays=as_record(local.initial_tensors(spec, 0)),
                   num_rounds=cfg["rounds"], evaluate_fn=evaluate)

begun = time.perf_counter()
run_simulation(server_app=server_app, client_app=client_app, num_supernodes=cfg["parties"],
               backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                               "init_args": {"num_cpus": 2, "include_dashboard": False}})
# marks[0] is the initial evaluation, marks[r] the end of round r.
print(json.dumps({"start": marks[0][0], "begun": begun, "ends": [t for t, _ in marks[1:]],
                  "accuracy": marks[-1][1]}))
"""


def flower_python() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "flwr[simulation]==1.42.*", "torch==2.13.0",
             "scikit-learn", "safetensors"],
            check=True,
        )  # fmt: skip
    return python


def run_child(cmd: list[str], *, env: dict | None = None, log: Path) -> tuple[dict, TreeRss]:
    with TreeRss() as rss, log.open("wb") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env or os.environ, stdout=subprocess.PIPE, stderr=err)
        rss.roots.append(proc.pid)
        out, _ = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"{cmd[1]} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
    return json.loads(out.decode().strip().splitlines()[-1]), rss


def run_plain(folder: Path, split: str) -> dict:
    alpha = "none" if split == "iid" else str(ALPHA)
    result, rss = run_child(
        [sys.executable, __file__, "--plain-child", str(folder), alpha], log=folder / "plain.log"
    )
    return figures(result["ends"], result["start"], result["accuracy"], rss)


def run_flower(folder: Path) -> dict:
    python = flower_python()
    script = SCRATCH / "flower_app.py"
    script.write_text(FLOWER_APP)
    env = {**os.environ, "RAY_DEDUP_LOGS": "0", "RAY_USAGE_STATS_ENABLED": "0"}
    began = time.perf_counter()
    result, rss = run_child(
        [str(python), str(script), str(folder), str(ROOT)], env=env, log=folder / "flower.log"
    )
    out = figures(result["ends"], result["start"], result["accuracy"], rss)
    out["startup_s"] = round(result["start"] - began, 2)  # Ray and the engine, before round 1
    return out


# ---------------------------------------------------------------------------------------------------- ours


_django_ready = False


def fresh_database() -> None:
    """An empty scratch database (PostgreSQL: the URL names it), migrated, once per bench run."""
    global _django_ready
    if _django_ready:
        return
    import psycopg

    os.environ.update(DATABASE_URL=DATABASE_URL, REDIS_URL=REDIS_URL, VAR_DIR=str(SCRATCH / "var"),
                      DJANGO_SETTINGS_MODULE="platform_site.settings")  # fmt: skip
    name = DATABASE_URL.rsplit("/", 1)[1]
    admin = DATABASE_URL.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()  # the scratch index: no stale tasks from an earlier run
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    _django_ready = True


def enrol(folder: Path, split: str) -> tuple[int, list[list[str]]]:
    """A digits federation (the bench's settings) and its ten parties, each a user with a key written by the
    client's keygen, registered, an API token, joined and admitted: the last admission opens round 1.
    Returns the federation id and each party's client command line."""
    from federation import client, services
    from federation.simulation import _user, digits_federation_create
    from platform_site.accounts.services import api_token_create, public_key_register

    coordinator = _user("bench-coordinator")
    federation = digits_federation_create(
        coordinator=coordinator, name=f"bench {split}", rounds=ROUNDS, min_parties=PARTIES,
        update_norm_bound=1000.0, round_deadline=3600,
    )  # fmt: skip
    commands = []
    for k in range(PARTIES):
        user = _user(f"bench-party-{k}")
        key_path = folder / f"party-{k}.pem"
        key = client.keygen(key_path)
        key_id = public_key_register(
            actor=user, name=f"bench {split}", key_text=client.public_pem(key)
        ).key_id
        _, token = api_token_create(user=user, name=f"bench {split}")
        party = services.party_join(federation=federation, user=user, key_id=key_id)
        services.party_admit(federation=federation, party_id=party.pk, actor=coordinator)
        commands.append(
            [sys.executable, "-m", "federation.client", "run", str(federation.pk), "--data",
             str(folder / f"party-{k}.csv"), "--key", str(key_path), "--key-id", key_id, "--seed", str(k),
             "--token", token, "--poll", str(POLL), "--no-progress", "--idle-timeout", "900", "--device", "cpu"]
        )  # fmt: skip
    return federation.pk, commands


def serve(port: int, log: Path) -> subprocess.Popen:
    import http.client

    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
         "--workers", str(WEB_WORKERS), "platform_site.asgi:application"],
        cwd=ROOT, env={**os.environ, "DEBUG": "false"}, stdout=subprocess.DEVNULL, stderr=log.open("ab"),
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the web server exited:\n{log.read_text()[-3000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            return proc
        except OSError:
            time.sleep(0.3)
    raise RuntimeError("the web server did not come up")


def stop_all(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def run_ours(folder: Path, split: str) -> dict:
    """Live server, one worker, ten client processes over HTTP; the rounds' times from the ledgered rows."""
    import socket

    fresh_database()
    from federation.models import Federation, Round
    from ml.federated import local, tensors

    federation_id, commands = enrol(folder, split)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs: list[subprocess.Popen] = []
    clients: list[subprocess.Popen] = []
    with TreeRss() as rss:
        try:
            procs.append(serve(port, folder / "web.log"))
            rss.roots.append(procs[0].pid)
            worker = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "platform_site", "worker", "-Q", "default,ml", "-c", "1",
                 "-n", f"bench-{split}@localhost", "--without-gossip", "--without-mingle", "-l", "WARNING"],
                cwd=ROOT, env=os.environ, stdout=subprocess.DEVNULL, stderr=(folder / "worker.log").open("ab"),
            )  # fmt: skip
            procs.append(worker)
            rss.roots.append(worker.pid)
            client_env = {**os.environ, "PLATFORM_URL": f"http://127.0.0.1:{port}", "OMP_NUM_THREADS": "1"}
            for k, cmd in enumerate(commands):
                log = (folder / f"client-{k}.log").open("wb")
                clients.append(
                    subprocess.Popen(cmd, cwd=ROOT, env=client_env, stdout=log, stderr=subprocess.STDOUT)
                )
                rss.roots.append(clients[-1].pid)
            for k, proc in enumerate(clients):
                if proc.wait(3600) != 0:
                    raise RuntimeError(f"client {k} exited {proc.returncode}:\n"
                                       f"{(folder / f'client-{k}.log').read_text()[-2000:]}")  # fmt: skip
        finally:
            stop_all(clients + procs)
    federation = Federation.objects.get(pk=federation_id)
    if federation.status != Federation.Status.FINISHED:
        raise RuntimeError(f"the federation is {federation.status}: {federation.error}")
    rounds = list(Round.objects.filter(federation_id=federation_id).order_by("number"))
    last = rounds[-1]
    final = tensors.decode(last.result.read(), shapes={n: a.shape for n, a in local.initial_tensors(
        federation.spec, 0).items()}, max_bytes=1 << 24)  # fmt: skip
    _, data, _ = load(folder)
    accuracy = local.evaluate(spec=federation.spec, tensors=final, X=data["X_test"], y=data["y_test"])[
        "accuracy"
    ]
    start = rounds[0].created_at.timestamp()
    ends = [r.created_at.timestamp() for r in rounds[1:]] + [last.closed_at.timestamp()]
    out = figures(ends, start, accuracy, rss)
    out["server_accuracy"] = round(float(last.metrics.get("accuracy", float("nan"))), 4)
    out["updates_ledgered"] = federation_entries(federation_id)
    return out


def federation_entries(federation_id: int) -> int:
    """How many federation.update.accepted entries the ledger holds for the federation."""
    from ledger.models import Entry

    return Entry.objects.filter(kind="federation.update.accepted", payload__federation=federation_id).count()


def main() -> None:
    results: dict = {
        "rounds": ROUNDS, "parties": PARTIES, "cores": len(os.sched_getaffinity(0)), "web_workers": WEB_WORKERS
    }  # fmt: skip
    for split in SPLITS:
        folder = prepare(split)
        one: dict = {}
        if "plain" in SYSTEMS:
            one["plain"] = run_plain(folder, split)
        if "flower" in SYSTEMS:
            try:
                one["flower"] = run_flower(folder)
            except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:  # no venv to be had here
                one["flower"] = {"error": str(exc)[-500:]}
        if "ours" in SYSTEMS:
            one["ours"] = run_ours(folder, split)
        if "ours" in one and one.get("flower", {}).get("s_per_round"):
            one["ours_over_flower_s_per_round"] = round(
                one["ours"]["s_per_round"] / one["flower"]["s_per_round"], 3
            )
        if "ours" in one and "plain" in one:
            one["ours_minus_plain_accuracy"] = round(one["ours"]["accuracy"] - one["plain"]["accuracy"], 4)
        if "accuracy" in one.get("flower", {}) and "plain" in one:
            one["flower_minus_plain_accuracy"] = round(
                one["flower"]["accuracy"] - one["plain"]["accuracy"], 4
            )
        results[split] = one
    print(json.dumps(results))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--plain-child":
        plain_child(Path(sys.argv[2]), None if sys.argv[3] == "none" else float(sys.argv[3]))
    else:
        main()
