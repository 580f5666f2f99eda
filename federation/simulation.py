"""Simulated parties, for the demo, the tests and `manage.py simulate_federation`: each is a real user with an
API token and a registered Ed25519 key, holding one share of scikit-learn's digits as its own CSV, and runs the
party's client (`federation.client.Runner`) one step per Celery task on the `ml` queue, through the REST API
in-process (`DjangoTransport`): the same requests, checks, signatures and ledger entries as a party at its own
site, without a web server. A byzantine party sends its update sign-flipped and scaled x10.

A party's private key, token and data stay in VAR_DIR/federation-sim/<federation>/ (files of mode 0600); the
tasks carry only ids."""

import json
import logging
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from celery import shared_task
from django.conf import settings

from federation import client

logger = logging.getLogger(__name__)

POLL_SECONDS = 1.0  # between two looks of a waiting party
LIFETIME_SECONDS = 6 * 3600  # a simulated party gives up after this long
BYZANTINE_SCALE = -10.0


_local = threading.local()


def _client():
    """One request handler per thread: building one loads every middleware (whitenoise scans the static
    files), which a step per task must not pay each time."""
    if getattr(_local, "client", None) is None:
        from django.test import Client

        _local.client = Client(raise_request_exception=False)
    return _local.client


class DjangoTransport:
    """The client's transport through Django's request handler in this process, `Authorization: Bearer`."""

    def __init__(self, token: str) -> None:
        self.token = token

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        multipart: dict[str, client.Field] | None = None,
    ) -> client.Response:
        from django.core.files.uploadedfile import SimpleUploadedFile

        if multipart is not None:
            data = {
                name: SimpleUploadedFile(v[0], v[1], content_type=v[2]) if isinstance(v, tuple) else v
                for name, v in multipart.items()
            }
        auth = {"HTTP_AUTHORIZATION": f"Bearer {self.token}", "HTTP_ACCEPT": "application/json"}
        handler = _client()
        handler.cookies.clear()  # parties share the handler, never a session
        if multipart is not None:
            response = handler.post(path, data=data, **auth)
        elif method == "GET":
            response = handler.get(path, **auth)
        else:
            body = json.dumps(json_body if json_body is not None else {})
            response = handler.generic(method, path, body, content_type="application/json", **auth)
        body_bytes = b"".join(response.streaming_content) if response.streaming else response.content
        headers = {k.lower(): v for k, v in response.headers.items()}
        return client.Response(response.status_code, headers, body_bytes)


def folder_for(federation_id: int) -> Path:
    return Path(settings.VAR_DIR) / "federation-sim" / str(int(federation_id))


def byzantine(delta: dict) -> dict:
    """The poisoned update: sign-flipped and scaled x10."""
    return {name: (array * BYZANTINE_SCALE).astype(array.dtype) for name, array in delta.items()}


def party_files_write(
    *, folder: Path, index: int, token: str, key_id: str, data: Path, seed: int, is_byzantine: bool
) -> Path:
    """The settings file of simulated party `index` (mode 0600: it holds the party's API token)."""
    path = folder / f"party-{index}.json"
    path.unlink(missing_ok=True)
    body = {"token": token, "key_id": key_id, "key": str(folder / f"party-{index}.pem"), "data": str(data),
            "seed": seed, "byzantine": is_byzantine}  # fmt: skip
    client.write_private(path, json.dumps(body).encode())
    return path


def party_runner(federation_id: int, index: int, done: list[int]) -> client.Runner:
    cfg = json.loads((folder_for(federation_id) / f"party-{index}.json").read_text())
    party = client.Party(
        federation=int(federation_id),
        key=client.load_key(Path(cfg["key"])),
        key_id=cfg["key_id"],
        data=Path(cfg["data"]),
        seed=int(cfg["seed"]),
        device=settings.ML_DEVICE or "auto",
        tamper=byzantine if cfg["byzantine"] else None,
    )
    name = f"federation {federation_id} simulated party {index}"
    runner = client.Runner(
        client.Api(DjangoTransport(cfg["token"])), party, say=lambda line: logger.info("%s: %s", name, line)
    )
    runner.done = set(done)
    return runner


def parties_dispatch(*, federation_id: int, parties: int, countdown: float = 0) -> None:
    """Queue each simulated party's first step (after commit, when called inside a transaction)."""
    until = time.time() + LIFETIME_SECONDS
    for index in range(parties):
        simulated_party_step.apply_async((federation_id, index, [], until), countdown=countdown, queue="ml")


@shared_task(
    name="federation.simulated_party_step",
    ignore_result=True,
    acks_late=True,
    soft_time_limit=600,
    time_limit=660,
)
def simulated_party_step(federation_id: int, index: int, done: list[int], until: float) -> str:
    """One step of a simulated party's run loop, then the next step queued (after POLL_SECONDS when it waits),
    until the federation ends, the party is refused for good, or its lifetime is over."""
    runner = party_runner(federation_id, index, done)
    try:
        step = runner.step()
    except client.ClientError as exc:
        transient = isinstance(exc, client.Unreachable) or (
            isinstance(exc, client.ApiError) and (exc.status >= 500 or exc.status == 429)
        )
        runner.say(exc.message)
        if not transient:
            return "stopped"
        step = client.Step("waiting", exc.message)
    if step.state == "finished":
        runner.say(step.message)
        return "finished"
    if step.state in ("submitted", "refused"):
        runner.say(step.message)
    if time.time() > until:
        runner.say("lifetime over; giving up")
        return "expired"
    countdown = 0 if step.state in ("submitted", "refused") else POLL_SECONDS
    simulated_party_step.apply_async(
        (federation_id, index, sorted(runner.done), until), countdown=countdown, queue="ml"
    )
    return step.state


# ------------------------------------------------------------------------------------------------- set-up


def _user(username: str):
    from django.contrib.auth import get_user_model

    from platform_site.accounts.services import user_signup

    existing = get_user_model().objects.filter(username=username).first()
    return existing or user_signup(username=username, password=secrets.token_urlsafe(24))


def digits_federation_create(
    *, coordinator, name: str, rounds: int, min_parties: int, strategy: str = "fedavg", options: dict | None = None,
    secure_aggregation: bool = False, privacy: dict | None = None, target_value: float | None = None,
    update_norm_bound: float = 1000.0, round_deadline: int = 600, folder: Path | None = None,
    description: str = "", reward_pool: int = 0,
):  # fmt: skip
    """A federation on the digits task (MLP 64-128-10, SGD lr 0.05, batch 32, 1 epoch), validated on the
    held-out 20%."""
    import tempfile

    from django.core.files import File

    from federation.services import federation_create
    from ml.federated.splits import digits_task, write_csv

    task = digits_task()
    with tempfile.TemporaryDirectory() as scratch:
        validation = write_csv(Path(scratch) / "validation.csv", task, test=True)
        with open(validation, "rb") as fh:
            return federation_create(
                coordinator=coordinator, name=name, description=description, reward_pool=reward_pool,
                schema=task.schema.to_json(), spec=task.spec(),
                recipe={"optimizer": "sgd", "lr": 0.05, "batch_size": 32, "local_epochs": 1, "proximal_mu": 0.0},
                strategy=strategy, options=options or {}, privacy=privacy, secure_aggregation=secure_aggregation,
                update_norm_bound=update_norm_bound, rounds=rounds, min_parties=min_parties,
                round_deadline=round_deadline, target_metric="accuracy", target_value=target_value,
                validation=File(fh, name="validation.csv"),
            )  # fmt: skip


def parties_enrol(
    *, federation, parties: int, alpha: float | None = None, byzantine: int = 0, seed: int = 0,
    admit_as=None,
) -> list[int]:  # fmt: skip
    """`parties` simulated users (sim-party-1...), each with a new key and API token, a share of the digits
    training rows (IID, or Dirichlet(alpha) by label) as its CSV, joined; admitted by `admit_as` (the
    coordinator) when given. The first `byzantine` parties poison their updates. Returns the party ids."""
    from federation.services import party_admit, party_join
    from ml.federated.splits import digits_task, dirichlet_partitions, iid_partitions, write_csv
    from platform_site.accounts.services import api_token_create, public_key_register

    task = digits_task()
    if [c["name"] for c in federation.schema["columns"]] != task.columns:
        raise ValueError("simulated parties hold digits (pixel0..pixel63); this federation's schema differs")
    shares = (
        iid_partitions(len(task.y_train), parties, seed=seed)
        if alpha is None
        else dirichlet_partitions(task.y_train, parties, alpha=alpha, seed=seed)
    )
    folder = folder_for(federation.pk)
    folder.mkdir(parents=True, exist_ok=True)
    ids = []
    for index, rows in enumerate(shares):
        user = _user(f"sim-party-{index + 1}")
        key_path = folder / f"party-{index}.pem"
        key_path.unlink(missing_ok=True)
        key = client.keygen(key_path)
        registered = public_key_register(
            actor=user, name=f"federation {federation.pk} simulation", key_text=client.public_pem(key)
        )
        _, token = api_token_create(user=user, name=f"federation {federation.pk} simulation")
        data = write_csv(folder / f"party-{index}.csv", task, rows)
        party_files_write(folder=folder, index=index, token=token, key_id=registered.key_id, data=data,
                          seed=index, is_byzantine=index < byzantine)  # fmt: skip
        party = party_join(federation=federation, user=user, key_id=registered.key_id)
        if admit_as is not None:
            party_admit(federation=federation, party_id=party.pk, actor=admit_as)
        ids.append(party.pk)
    return ids
