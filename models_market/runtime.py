"""Models loaded for inference, cached per process: least recently used first out, bounded by
MODELS_CACHE_BYTES (the artifacts' sizes, which is about what a loaded scikit-learn model or a torch module's
weights take), and the feature schemas that requests are checked against. Keyed by the artifact's SHA-256 too,
so a version whose artifact changed is never served from an old load."""

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage

from ml.features import FeatureError, FeatureSchema
from models_market.models import ModelVersion
from platform_site.errors import Conflict, DomainError

SCHEMAS_MAX = 4096  # schemas are small: bounded by count


@dataclass(frozen=True)
class Loaded:
    model: Any
    sha256: str
    size: int  # what it counts for against MODELS_CACHE_BYTES


_models: "OrderedDict[tuple[int, str], Loaded]" = OrderedDict()
_schemas: "OrderedDict[tuple[int, str], FeatureSchema]" = OrderedDict()
_cached_bytes = 0
_lock = threading.Lock()  # the caches are shared by a web process's threads


def schema_for(version: ModelVersion) -> FeatureSchema:
    """The version's feature schema, parsed once per process."""
    key = (version.pk, version.artifact_sha256)
    with _lock:
        schema = _schemas.get(key)
        if schema is not None:
            _schemas.move_to_end(key)
            return schema
    try:
        schema = FeatureSchema.from_json(version.schema)
    except FeatureError as exc:
        raise Conflict(f"the model's feature schema is unusable: {exc}") from exc
    with _lock:
        _schemas[key] = schema
        while len(_schemas) > SCHEMAS_MAX:
            _schemas.popitem(last=False)
    return schema


def model_for(version: ModelVersion) -> Loaded:
    """The version's model, loaded from its artifact (checked against its SHA-256) on first use."""
    global _cached_bytes
    key = (version.pk, version.artifact_sha256)
    with _lock:
        loaded = _models.get(key)
        if loaded is not None:
            _models.move_to_end(key)
            return loaded
    loaded = _load(version)  # outside the lock: other models keep serving meanwhile
    with _lock:
        if key not in _models:
            _models[key] = loaded
            _cached_bytes += loaded.size
        # The newest always stays, even alone above the bound: it is about to be used.
        while _cached_bytes > settings.MODELS_CACHE_BYTES and len(_models) > 1:
            _, old = _models.popitem(last=False)
            _cached_bytes -= old.size
    return loaded


def _load(version: ModelVersion) -> Loaded:
    from ml import supervised  # torch and scikit-learn load on the first call, not when the site starts

    if not version.artifact:
        raise Conflict("the model version has no artifact")
    with default_storage.open(version.artifact.name, "rb") as fh:
        data = fh.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != version.artifact_sha256:
        # What the receipts name must be what runs: a changed file is never served.
        raise Conflict("the model's artifact does not match its recorded SHA-256; it cannot be called")
    model = supervised.model_from_bytes(data, spec=version.spec, device=settings.ML_DEVICE)
    return Loaded(model=model, sha256=digest, size=max(len(data), 1))


def cache_info() -> dict[str, int]:
    """What this process holds: for tests and the benchmark."""
    with _lock:
        return {"models": len(_models), "bytes": _cached_bytes, "limit": settings.MODELS_CACHE_BYTES}


def cache_clear() -> None:
    global _cached_bytes
    with _lock:
        _models.clear()
        _schemas.clear()
        _cached_bytes = 0


def predict(loaded: Loaded, schema: FeatureSchema, X: Any) -> list[dict]:
    """Predictions for a feature matrix that `schema.rows_matrix` made; DomainError (400) when the model's outputs
    for these rows are not finite numbers (they could be neither answered nor written in a receipt)."""
    from ml import supervised
    from ml.artifacts import ArtifactError

    try:
        return supervised.predict_matrix(loaded.model, schema, X)
    except ArtifactError as exc:
        raise DomainError(f"the model cannot answer these rows: {exc}") from None
