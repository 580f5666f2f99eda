"""Ready model versions and their tokens for the money tests, made without the training pipeline: a tiny
scikit-learn logistic regression on synthetic rows, saved by ml.supervised as the platform saves models."""

import hashlib
from functools import cache

import numpy as np
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone
from sklearn.linear_model import LogisticRegression

from ledger import services as ledger
from marketplace.models import Dataset, DatasetVersion
from ml import supervised
from ml.features import FeatureSchema
from models_market import services
from models_market.models import ModelAsset, ModelParent, ModelToken, ModelVersion, Receipt
from models_market.services import admission, metering
from models_market.services.receipts import receipt_sign

COLUMNS = ("age", "income", "visits")
ROW = {"age": 0.5, "income": -1.25, "visits": 2}


def schema() -> FeatureSchema:
    numeric = [{"name": c, "type": "numeric", "impute": 0.0, "center": 0.0, "scale": 1.0} for c in COLUMNS]
    return FeatureSchema(
        columns=numeric, target={"name": "churned", "task": "classification", "classes": [0, 1]}
    )


@cache
def artifact(seed: int = 0) -> bytes:
    """The skops bytes of a logistic regression on 3 features (one per seed, trained once per test run)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(200, len(COLUMNS)))
    y = (X @ np.array([1.0, -2.0, 0.5]) + rng.normal(scale=0.3, size=200) > 0).astype(int)
    _kind, data = supervised.model_to_bytes(LogisticRegression().fit(X, y))
    return data


def make_version(
    creator, *, lineage_bp: int = 0, parents: tuple[ModelVersion, ...] = (), trained_on: DatasetVersion | None = None,
    seed: int = 0, name: str = "Churn",
) -> ModelVersion:  # fmt: skip
    data = artifact(seed)
    asset = ModelAsset.objects.create(creator=creator, name=name, task=ModelAsset.Task.CLASSIFICATION)
    version = ModelVersion(
        asset=asset, number=1, status=ModelVersion.Status.READY, origin=ModelVersion.Origin.UPLOADED,
        format=ModelVersion.Format.SKLEARN, algorithm="logistic_regression",
        artifact_sha256=hashlib.sha256(data).hexdigest(), size=len(data), schema=schema().to_json(),
        lineage_bp=lineage_bp, trained_on=trained_on, created_by=creator,
    )  # fmt: skip
    version.artifact.save(f"{asset.pk}.skops", ContentFile(data), save=False)
    version.save()
    for parent in parents:
        ModelParent.objects.create(child=version, parent=parent, relation=ModelParent.Relation.FINE_TUNED)
    return version


def mint(version: ModelVersion, *, owner=None, royalty_bp: int = 0) -> ModelToken:
    """The version's token and its `models_market.token.minted` entry, as minting writes them."""
    owner = owner or version.created_by
    with transaction.atomic():
        token = ModelToken.objects.create(
            version=version, owner=owner, creator=owner, artifact_sha256=version.artifact_sha256,
            royalty_bp=royalty_bp, minted_seq=-1,
        )  # fmt: skip
        entry = ledger.entry_append(
            kind="models_market.token.minted", actor=ledger.account_name(user=owner),
            payload={"token": token.pk, "version": version.pk, "artifact_sha256": version.artifact_sha256,
                     "royalty_bp": royalty_bp, "owner": ledger.account_name(user=owner)},
        )  # fmt: skip
        token.minted_seq = entry.seq
        token.save(update_fields=["minted_seq"])
    return token


def listed(owner, **offers) -> ModelToken:
    """A ready, tokenized model of `owner`'s, listed with `offers` (a perpetual licence at 5,000 by default)."""
    token = mint(
        make_version(
            owner,
            **{
                k: offers.pop(k) for k in list(offers) if k in ("lineage_bp", "parents", "trained_on", "seed")
            },
        )
    )
    offers = {"price_perpetual": 5_000, "listed": True, **offers}
    return services.token_offer_set(token=token, actor=owner, **offers)


def dataset_version(owner) -> DatasetVersion:
    dataset = Dataset.objects.create(owner=owner, title="Churn data", terms={})
    return DatasetVersion.objects.create(
        dataset=dataset, number=1, file="datasets/churn.csv", format="csv", size=10, sha256="0" * 64,
        status=DatasetVersion.Status.READY,
    )  # fmt: skip


def balance(account) -> int:
    from ledger import selectors

    name = account if isinstance(account, str) else ledger.account_name(user=account)
    return selectors.account_balance(name=name)


def meter_mirrors_the_ledger(user) -> bool:
    """Whether the caller's meter holds exactly what their call deposit holds on the ledger, and covers what
    their unsettled calls reserved."""
    from models_market.models import CallMeter

    meter = CallMeter.objects.filter(user=user).first()
    deposit = balance(ledger.account_name(deposit=user))
    return (meter.deposit, meter.reserved <= meter.deposit) == (deposit, True) if meter else deposit == 0


def group_call(user, token, license=None, *, price=0, api_token=None, signed=True) -> admission.Call:
    """A call as a thread makes it ready for its group (admission._write): numbered, and signed alone unless
    `signed` is False (then its group's writer signs it with the others)."""
    version, now = token.version, timezone.now()
    receipt = None
    if license is not None:
        receipt = Receipt(pk=metering._receipt_number(), license=license, version=version, caller=user,
                          price=price, model_sha256=version.artifact_sha256, input_sha256="0" * 64,
                          output_sha256="1" * 64, rows=1, issued_at=now)  # fmt: skip
        if signed:
            receipt.body, receipt.key_id, receipt.signature = receipt_sign(receipt)
    return admission.Call(
        user_id=user.pk, api_token_id=api_token, version_id=version.pk, sha256=version.artifact_sha256,
        license_id=license.pk if license else None, now=now, receipt=receipt,
        quota=license is not None and license.kind == "quota",
    )  # fmt: skip
