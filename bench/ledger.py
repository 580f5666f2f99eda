"""Ledger throughput on PostgreSQL, one JSON line.

1. Ledgered transfers per second with 8 concurrent writer processes, divided by the same writers doing the same
   balance updates with no ledger (the bare cost of the database transaction). Goal: ≥ 0.8.
2. `verify_ledger` entries per second, divided by this machine's raw Ed25519 verifications per second (one core).
   Goal: ≥ 0.7. Measured with one process and with `--jobs 2` (signature checks on both cores).

Needs DATABASE_URL naming a scratch PostgreSQL database (it is migrated and its ledger tables emptied), e.g.
  createdb -h 127.0.0.1 bench && DATABASE_URL=postgres://root@127.0.0.1:5432/bench python bench/ledger.py
"""

import json
import multiprocessing as mp
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WRITERS = int(os.environ.get("BENCH_WRITERS", 8))
PER_WRITER = int(os.environ.get("BENCH_TRANSFERS", 150))
ACCOUNTS = int(os.environ.get("BENCH_ACCOUNTS", 32))

sys.path.insert(0, str(ROOT))
# Made once, by the parent: the writer processes import this module again and inherit VAR_DIR.
SCRATCH = "" if "VAR_DIR" in os.environ else tempfile.mkdtemp(prefix="bench-ledger-")
if SCRATCH:
    os.environ["VAR_DIR"] = SCRATCH
os.environ["DJANGO_SETTINGS_MODULE"] = "platform_site.settings"
os.environ.setdefault("LEDGER_CHECKPOINT_EVERY", "0")  # checkpoints are made by beat, not in this loop


def setup_django() -> None:
    import django

    django.setup()


def writer(mode: str, seed: int, names: list[str], start, results) -> None:
    setup_django()
    from django.db import connection, transaction

    from ledger import services
    from ledger.models import Account

    rng = random.Random(seed)
    pairs = [rng.sample(names, 2) for _ in range(PER_WRITER)]
    connection.ensure_connection()
    start.wait()
    t0 = time.perf_counter()
    for source, destination in pairs:
        with transaction.atomic(durable=True):
            if mode == "ledger":
                services.transfer(source=source, destination=destination, amount=1, actor="system")
            else:
                locked = list(
                    Account.objects.select_for_update().filter(name__in=[source, destination]).order_by("pk")
                )
                for account in locked:
                    account.balance += -1 if account.name == source else 1
                    account.save(update_fields=["balance"])
    results.put(time.perf_counter() - t0)


def run_writers(mode: str, names: list[str]) -> float:
    ctx = mp.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=writer, args=(mode, i, names, start, results)) for i in range(WRITERS)]
    for p in procs:
        p.start()
    time.sleep(3)  # let every writer import Django and connect before the clock starts
    t0 = time.perf_counter()
    start.set()
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - t0
    if any(p.exitcode for p in procs):
        raise SystemExit(f"a {mode} writer failed")
    return WRITERS * PER_WRITER / elapsed


def raw_ed25519_verifies_per_second(n: int = 5000) -> float:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    messages = [os.urandom(32) for _ in range(n)]
    signatures = [key.sign(m) for m in messages]
    t0 = time.perf_counter()
    for m, s in zip(messages, signatures, strict=True):
        public.verify(s, m)
    return n / (time.perf_counter() - t0)


def main() -> None:
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        raise SystemExit("set DATABASE_URL to a scratch PostgreSQL database")
    setup_django()
    from django.core.management import call_command
    from django.db import connection, transaction

    from ledger import services
    from ledger.models import Account, Checkpoint, Entry, LedgerHead, MerkleNode, SigningKey

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        for model in (Entry, MerkleNode, Checkpoint, Account, SigningKey):
            cursor.execute(f'TRUNCATE "{model._meta.db_table}" CASCADE')
    LedgerHead.objects.update_or_create(
        pk=1, defaults={"size": 0, "head_hash": bytes(32), "frontier": [], "active_key_id": ""}
    )
    names = ["treasury"] + [services.account_name(dao=i) for i in range(1, ACCOUNTS)]
    with transaction.atomic():
        for name in names[1:]:
            services.account_open_for_app(name=name, kind="dao")
        for name in names:
            services.mint(destination=name, amount=10**9, actor="system", reason="bench")

    before = dict(Account.objects.values_list("name", "balance"))
    bare = run_writers("bare", names)
    for name, balance in before.items():  # the bare run moved tokens without entries: put them back
        Account.objects.filter(name=name).update(balance=balance)
    ledgered = run_writers("ledger", names)
    services.checkpoint_create()

    entries = Entry.objects.count()
    verify_rate = {}
    for jobs in (1, 2):
        t0 = time.perf_counter()
        call_command("verify_ledger", "--quiet", "--jobs", str(jobs))
        verify_rate[jobs] = entries / (time.perf_counter() - t0)
    raw = raw_ed25519_verifies_per_second()
    print(
        json.dumps(
            {
                "bench": "ledger",
                "writers": WRITERS,
                "transfers_per_writer": PER_WRITER,
                "accounts": ACCOUNTS,
                "bare_tx_per_s": round(bare, 1),
                "ledgered_tx_per_s": round(ledgered, 1),
                "ledgered_over_bare": round(ledgered / bare, 3),
                "verify_entries": entries,
                "verify_entries_per_s": round(verify_rate[1], 1),
                "raw_ed25519_verifies_per_s": round(raw, 1),
                "verify_over_raw_ed25519": round(verify_rate[1] / raw, 3),
                "verify_jobs2_entries_per_s": round(verify_rate[2], 1),
                "verify_jobs2_over_raw_ed25519": round(verify_rate[2] / raw, 3),
            }
        )
    )


if __name__ == "__main__":
    try:
        main()
    finally:
        if SCRATCH:
            shutil.rmtree(SCRATCH, ignore_errors=True)
