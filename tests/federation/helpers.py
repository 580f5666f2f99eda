"""Federations for the tests, built through the real services: the digits task (scikit-learn's load_digits,
standardized on the training part), parties with registered Ed25519 keys, and signed updates made the way a
party makes them (ml.federated.local + protocol.sign), without the client."""

import base64
import io
import json
from dataclasses import dataclass
from functools import cache

import numpy as np
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.files.uploadedfile import SimpleUploadedFile

from federation import protocol, services
from federation.models import Federation, Party
from ledger.models import Entry
from ml.federated import tensors
from platform_site.accounts.services import public_key_register
from tests.ledger.helpers import fund

RECIPE = {"optimizer": "sgd", "lr": 0.05, "batch_size": 32, "local_epochs": 2, "proximal_mu": 0.0}
SPEC = {"hidden": [32], "activation": "relu"}


@cache
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X_train, y_train, X_test, y_test) of load_digits, 80/20 with random_state 0 (no download: bundled)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0)
    return X_train, y_train, X_test, y_test


def schema() -> dict:
    X_train = digits()[0]
    center, scale = X_train.mean(axis=0), X_train.std(axis=0)
    columns = [
        {
            "name": f"px{i}",
            "type": "numeric",
            "impute": 0.0,
            "center": float(c),
            "scale": float(s) if s > 0 else 1.0,
        }
        for i, (c, s) in enumerate(zip(center, scale, strict=True))
    ]
    return {
        "columns": columns,
        "target": {"name": "digit", "task": "classification", "classes": list(range(10))},
    }


def csv_bytes(X: np.ndarray, y: np.ndarray) -> bytes:
    lines = [",".join([*(f"px{i}" for i in range(X.shape[1])), "digit"])]
    lines += [
        ",".join([*(str(int(v)) for v in row), str(int(label))]) for row, label in zip(X, y, strict=True)
    ]
    return ("\n".join(lines) + "\n").encode()


def validation_file(rows: int = 300) -> SimpleUploadedFile:
    _, _, X_test, y_test = digits()
    return SimpleUploadedFile(
        "validation.csv", csv_bytes(X_test[:rows], y_test[:rows]), content_type="text/csv"
    )


def party_table(index: int, parties: int):
    """Party `index`'s share of the training rows (IID, round robin), as a Table."""
    from ml.tabular import read_table

    X_train, y_train = digits()[:2]
    rows = slice(index, None, parties)
    return read_table(io.BytesIO(csv_bytes(X_train[rows], y_train[rows])), fmt="csv")


@dataclass
class Member:
    """A party as the tests drive it: the user, their private key, the key id and the party row."""

    user: object
    key: Ed25519PrivateKey
    key_id: str
    party: Party | None = None


def keyed(user, *, organization=None) -> Member:
    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    row = public_key_register(
        actor=user, name="fl", key_text=base64.b64encode(raw).decode(), organization=organization
    )
    return Member(user=user, key=key, key_id=row.key_id)


def create(coordinator, *, pool: int = 100_000, fund_it: bool = True, **overrides) -> Federation:
    if fund_it and pool:
        fund(f"user:{coordinator.pk}", pool)
    fields = {
        "name": "Digits together", "schema": schema(), "spec": SPEC, "recipe": RECIPE, "strategy": "fedavg",
        "update_norm_bound": 100.0, "rounds": 3, "min_parties": 2, "round_deadline": 3600,
        "target_metric": "accuracy", "target_value": 0.99, "reward_pool": pool, "validation": validation_file(),
        **overrides,
    }  # fmt: skip
    return services.federation_create(coordinator=coordinator, **fields)


def admitted(federation: Federation, members: list[Member]) -> list[Member]:
    """Join and admit each member, in order (the minimum reached opens round 1)."""
    for m in members:
        m.party = services.party_join(federation=federation, user=m.user, key_id=m.key_id)
    for m in members:
        m.party = services.party_admit(
            federation=federation, party_id=m.party.pk, actor=federation.coordinator
        )
    federation.refresh_from_db()
    return members


def global_of(federation: Federation, number: int) -> dict:
    from federation.services.common import tensors_load

    return tensors_load(federation.round_set.get(number=number).weights, federation.spec)


def trained_delta(federation: Federation, number: int, index: int, parties: int, *, seed: int = 0):
    """(delta, num_examples, metrics) of party `index` training on its share from round `number`'s model."""
    from ml.features import FeatureSchema
    from ml.federated import local

    X, y = local.task_xy(FeatureSchema.from_json(federation.schema), party_table(index, parties))
    result = local.train_local(
        spec=federation.spec, global_tensors=global_of(federation, number), X=X, y=y, recipe=federation.recipe,
        seed=seed + index,
    )  # fmt: skip
    return result.delta, result.num_examples, result.metrics


def signed(federation: Federation, number: int, member: Member, delta: dict, num_examples: int) -> str:
    message = protocol.update_message(
        federation=federation.pk, round=number, sha256=tensors.digest(delta), num_examples=num_examples
    )
    return protocol.sign(member.key, message)


def upload(data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile("update.safetensors", data, content_type="application/octet-stream")


def submit(federation: Federation, number: int, member: Member, delta: dict, num_examples: int = 100, **over):
    """Submit a party's update through the service, signed unless `signature` is given."""
    fields = {
        "federation": federation, "number": number, "user": member.user, "file": upload(tensors.encode(delta)),
        "num_examples": num_examples, "metrics": {"loss": 0.5}, "key_id": member.key_id,
        "signature": signed(federation, number, member, delta, num_examples),
    }  # fmt: skip
    fields.update(over)
    return services.update_submit(**fields)


def small_delta(federation: Federation, scale: float = 0.01, seed: int = 0) -> dict:
    from federation.services.common import shapes

    rng = np.random.default_rng(seed)
    return {
        n: (rng.standard_normal(s) * scale).astype(np.float32) for n, s in shapes(federation.spec).items()
    }


def kinds(kind: str) -> list[dict]:
    return [e.payload for e in Entry.objects.filter(kind=kind).order_by("seq")]


def multipart(
    member: Member, data: bytes, num_examples: int, signature: str, metrics: dict | None = None
) -> dict:
    return {
        "update": upload(data), "num_examples": str(num_examples), "metrics": json.dumps(metrics or {}),
        "key_id": member.key_id, "signature": signature,
    }  # fmt: skip
