"""Safe model files: PyTorch weights as safetensors plus an architecture spec, scikit-learn models as skops.

Nothing here calls `pickle`, `joblib` or `torch.load`. Every file is sniffed (`sniff`) before any loader sees it;
pickles, joblib dumps, `torch.save` archives and anything unknown are refused with the reason. A safetensors file
is checked against the spec (names, shapes, dtypes) from its JSON header before its tensors are read, and a skops
file against our own allow-list of types from its `schema.json` before skops builds anything.
"""

import hashlib
import io
import json
import struct
import zipfile
from typing import Any, Literal

import numpy as np
import torch

from ml.architecture import MLP, SpecError, build, parameter_shapes, validate_spec

DEFAULT_MAX_BYTES = 200 * 1024 * 1024
SPEC_METADATA_KEY = "architecture"  # the spec's JSON, carried in the safetensors header's metadata
PICKLE_WHY = "pickle files can run code when loaded; upload safetensors + spec or skops"
_SAFETENSORS_DTYPES = {
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F32": torch.float32,
    "F64": torch.float64,
}
_MAX_HEADER = 10 * 1024 * 1024

# The estimators the platform trains, and the types inside their skops files (scikit-learn 1.5 to 1.9).
ESTIMATORS = frozenset(
    {
        "sklearn.linear_model._logistic.LogisticRegression",
        "sklearn.linear_model._base.LinearRegression",
        "sklearn.linear_model._ridge.Ridge",
        "sklearn.ensemble._forest.RandomForestClassifier",
        "sklearn.ensemble._forest.RandomForestRegressor",
        "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
        "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
    }
)
ALLOWED_TYPES = ESTIMATORS | frozenset(
    {
        "builtins.dict",
        "builtins.list",
        "builtins.tuple",
        "builtins.str",
        "builtins.int",
        "builtins.float",
        "builtins.bool",
        "builtins.NoneType",
        "numpy.ndarray",
        "numpy.float64",
        "numpy.float32",
        "numpy.int64",
        "numpy.int32",
        "numpy.uint64",
        "numpy.uint8",
        "numpy.bool_",
        "numpy.random._generator.Generator",
        "sklearn.tree._classes.DecisionTreeClassifier",
        "sklearn.tree._classes.DecisionTreeRegressor",
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.preprocessing._label.LabelEncoder",
        "sklearn._loss._loss.CyHalfBinomialLoss",
        "sklearn._loss._loss.CyHalfMultinomialLoss",
        "sklearn._loss._loss.CyHalfSquaredError",
        "sklearn._loss.loss.HalfBinomialLoss",
        "sklearn._loss.loss.HalfMultinomialLoss",
        "sklearn._loss.loss.HalfSquaredError",
        "sklearn._loss.link.IdentityLink",
        "sklearn._loss.link.LogitLink",
        "sklearn._loss.link.MultinomialLogit",
        "sklearn._loss.link.Interval",
    }
)
# skops node kinds that build objects from data only; FunctionNode, MethodNode, OperatorFuncNode and the like
# (which call things by name) are refused.
ALLOWED_LOADERS = frozenset(
    {
        "DictNode",
        "ListNode",
        "TupleNode",
        "JsonNode",
        "TypeNode",
        "NdArrayNode",
        "ObjectNode",
        "TreeNode",
        "LossNode",
        "RandomGeneratorNode",
    }
)

Kind = Literal["safetensors", "skops"]
# joblib's compressors: its old zlib header, zlib, gzip, bz2, xz, lzma (raw) and lz4.
_COMPRESSED_MAGIC = (
    b"ZF",
    b"\x78",
    b"\x1f\x8b",
    b"BZh",
    b"\xfd7zXZ\x00",
    b"\x5d\x00\x00",
    b"\x04\x22\x4d\x18",
)


class ArtifactError(ValueError):
    """A model file that is refused or broken; the message is meant for the user who uploaded it."""


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of an artifact's bytes, as lowercase hex (what tokens and ledger entries record)."""
    return hashlib.sha256(data).hexdigest()


def _check_size(data: bytes, max_bytes: int) -> None:
    if len(data) > max_bytes:
        raise ArtifactError(f"the model file is {len(data):,} bytes; at most {max_bytes:,} are accepted")
    if not data:
        raise ArtifactError("the model file is empty")


def sniff(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Kind:
    """What a model file is, from its bytes alone: "safetensors" or "skops"; anything else is refused, with
    the reason, before any loader sees it."""
    _check_size(data, max_bytes)
    # The safetensors check comes first: it is strict (a JSON header whose tensors fill the rest exactly), and
    # a header length's first byte may be any byte, a pickle's or a compressor's magic included.
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return _sniff_zip(data, max_bytes)
    if _safetensors_header(data) is not None:
        return "safetensors"
    if data[:1] == b"\x80" and len(data) > 1 and 1 <= data[1] <= 5:
        raise ArtifactError(f"this is a Python pickle (protocol {data[1]}): {PICKLE_WHY}")
    if data[-1:] == b"." and data[:1] in b"(]}cK":
        raise ArtifactError(f"this looks like a Python pickle (protocol 0 or 1): {PICKLE_WHY}")
    if data.startswith(_COMPRESSED_MAGIC):
        raise ArtifactError(f"this is a compressed file, as joblib writes its pickles: {PICKLE_WHY}")
    raise ArtifactError(
        "unknown model file format: accepted are safetensors weights (with an architecture spec) and skops "
        "files for scikit-learn models"
    )


def _sniff_zip(data: bytes, max_bytes: int) -> Kind:
    try:
        infos = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        raise ArtifactError("the file starts like a zip archive but is not a readable one") from None
    names = [info.filename for info in infos]
    expanded = sum(info.file_size for info in infos)
    if expanded > 4 * max_bytes:
        raise ArtifactError(
            f"the zip archive expands to {expanded:,} bytes; at most {4 * max_bytes:,} are accepted"
        )
    if any(name.rsplit("/", 1)[-1] == "data.pkl" for name in names):
        raise ArtifactError(f"this is a torch.save file (a zip holding data.pkl): {PICKLE_WHY}")
    if any(name.endswith((".pkl", ".pickle", ".joblib")) for name in names):
        raise ArtifactError(f"this zip archive holds pickles: {PICKLE_WHY}")
    if "schema.json" in names:
        return "skops"
    raise ArtifactError("this zip archive is not a skops file (it has no schema.json)")


def _safetensors_header(data: bytes) -> dict | None:
    """The JSON header of a safetensors file whose tensors lie exactly in the rest of the bytes, else None."""
    if len(data) < 10:
        return None
    (length,) = struct.unpack("<Q", data[:8])
    if length < 2 or length > min(_MAX_HEADER, len(data) - 8) or data[8:9] != b"{":
        return None
    try:
        header = json.loads(data[8 : 8 + length])
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(header, dict):
        return None
    body = len(data) - 8 - length
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                return None
            continue
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            return None
        offsets, shape = info["data_offsets"], info["shape"]
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            return None
        if not (isinstance(shape, list) and all(isinstance(s, int) and s >= 0 for s in shape)):
            return None
        if not 0 <= offsets[0] <= offsets[1] <= body:
            return None
    return header


def save_torch(module: MLP, spec: dict) -> bytes:
    """The module's weights as safetensors bytes, with the spec's JSON in the header's metadata."""
    spec = validate_spec(spec)
    from safetensors.torch import save

    tensors = {
        name: t.detach().to("cpu", torch.float32).contiguous() for name, t in module.state_dict().items()
    }
    expected = parameter_shapes(spec)
    if {n: tuple(t.shape) for n, t in tensors.items()} != expected:
        raise ArtifactError("the module's parameters do not match its architecture spec")
    return save(tensors, metadata={SPEC_METADATA_KEY: json.dumps(spec, sort_keys=True)})


def spec_from_json(raw: bytes | str) -> dict:
    """A validated spec from an uploaded spec JSON file."""
    try:
        return validate_spec(json.loads(raw))
    except (UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, SpecError):
            raise ArtifactError(f"architecture spec: {exc}") from None
        raise ArtifactError("the architecture spec is not valid JSON") from None


def load_torch(
    data: bytes, spec: dict | bytes | str | None = None, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[MLP, dict]:
    """The module (in eval mode, on the CPU) and its validated spec, from safetensors bytes and a spec; without
    a spec, the one in the file's metadata. The file's tensor names, shapes and dtypes must match the spec's
    before any tensor is read, and every weight must be finite."""
    if sniff(data, max_bytes=max_bytes) != "safetensors":
        raise ArtifactError("PyTorch weights must be a safetensors file")
    header = _safetensors_header(data)
    assert header is not None  # noqa: S101 - sniff just checked it
    if spec is None:
        embedded = header.get("__metadata__", {}).get(SPEC_METADATA_KEY)
        if embedded is None:
            raise ArtifactError("upload the architecture spec with the weights: the file carries none")
        spec = embedded
    spec = spec_from_json(spec) if isinstance(spec, bytes | str) else _validated(spec)
    expected = parameter_shapes(spec)
    found = {n: info for n, info in header.items() if n != "__metadata__"}
    missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if missing or extra:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unexpected {', '.join(extra[:10])}"] if extra else []
        )
        raise ArtifactError(f"the weights do not match the architecture spec: {'; '.join(parts)}")
    for name, shape in expected.items():
        if tuple(found[name]["shape"]) != shape:
            raise ArtifactError(
                f"tensor {name} has shape {found[name]['shape']}, but the spec makes it {list(shape)}"
            )
        if found[name]["dtype"] not in _SAFETENSORS_DTYPES:
            raise ArtifactError(f"tensor {name} has dtype {found[name]['dtype']}; weights must be floats")
    from safetensors.torch import load

    try:
        tensors = load(data)
    except Exception as exc:  # the library's own checks (offsets, sizes) failed
        raise ArtifactError(f"the safetensors file is broken: {exc}") from None
    # Checked as the module holds them: a float64 weight beyond float32's range (1e300) turns infinite.
    tensors = {n: t.to(torch.float32) for n, t in tensors.items()}
    for name, tensor in tensors.items():
        if not torch.isfinite(tensor).all():
            raise ArtifactError(f"tensor {name} holds NaN or infinite values (as float32)")
    module = build(spec)
    module.load_state_dict(tensors, strict=True)
    return module.eval(), spec


def _validated(spec: dict) -> dict:
    try:
        return validate_spec(spec)
    except SpecError as exc:
        raise ArtifactError(f"architecture spec: {exc}") from None


def save_sklearn(estimator: Any) -> bytes:
    """A fitted estimator of an allowed type as skops bytes."""
    name = f"{type(estimator).__module__}.{type(estimator).__qualname__}"
    if name not in ESTIMATORS:
        raise ArtifactError(
            f"{type(estimator).__name__} is not among the scikit-learn models this platform keeps"
        )
    import skops.io

    return skops.io.dumps(estimator)


def skops_types(data: bytes) -> set[str]:
    """Every type (module.Class) and node kind a skops file would build, read from its schema.json."""
    try:
        schema = json.loads(zipfile.ZipFile(io.BytesIO(data)).read("schema.json"))
    except (KeyError, zipfile.BadZipFile, UnicodeDecodeError, ValueError, OSError):
        raise ArtifactError("the skops file's schema.json is missing or not JSON") from None
    found: set[str] = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "__class__" in node or "__loader__" in node:
                found.add(f"{node.get('__module__')}.{node.get('__class__')}")
                found.add(f"loader:{node.get('__loader__')}")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def load_sklearn(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """A scikit-learn model from skops bytes, refused unless every type in it is on `ALLOWED_TYPES`."""
    if sniff(data, max_bytes=max_bytes) != "skops":
        raise ArtifactError("scikit-learn models must be skops files")
    found = skops_types(data)
    loaders = {t.removeprefix("loader:") for t in found if t.startswith("loader:")}
    types = {t for t in found if not t.startswith("loader:")}
    refused = sorted((types - ALLOWED_TYPES) | {f"{k} (node kind)" for k in loaders - ALLOWED_LOADERS})
    if refused:
        raise ArtifactError(
            f"the skops file holds type(s) this platform does not load: {', '.join(refused[:10])}; "
            "allowed are logistic/linear/ridge regression, random forests and histogram gradient boosting"
        )
    import skops.io

    try:
        estimator = skops.io.loads(data, trusted=sorted(types))
    except Exception as exc:  # a malformed file: skops's own errors
        raise ArtifactError(f"the skops file cannot be loaded: {exc}") from None
    name = f"{type(estimator).__module__}.{type(estimator).__qualname__}"
    if name not in ESTIMATORS:
        raise ArtifactError(f"the skops file holds a {type(estimator).__name__}, not a model")
    _check_finite_estimator(estimator)
    return estimator


def _check_finite_estimator(estimator: Any) -> None:
    arrays = [
        (attr, getattr(estimator, attr, None)) for attr in ("coef_", "intercept_", "_baseline_prediction")
    ]
    # Trees: a forest's leaf values, a boosted model's node values (NaN there comes out as NaN predictions).
    for i, tree in enumerate(getattr(estimator, "estimators_", None) or []):
        arrays.append((f"tree {i}'s leaf values", getattr(getattr(tree, "tree_", None), "value", None)))
    for i, predictors in enumerate(getattr(estimator, "_predictors", None) or []):
        for predictor in predictors:
            nodes = getattr(predictor, "nodes", None)
            arrays.append(
                (f"boosting iteration {i}'s node values", None if nodes is None else nodes["value"])
            )
    for what, value in arrays:
        if value is not None and not np.all(np.isfinite(np.asarray(value, dtype=np.float64))):
            raise ArtifactError(f"the model's {what} holds NaN or infinite values")
