import io
import json
import pickle
import struct
import zipfile

import joblib
import numpy as np
import pytest
import skops.io
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from ml.architecture import build
from ml.artifacts import (
    PICKLE_WHY,
    ArtifactError,
    load_sklearn,
    load_torch,
    save_sklearn,
    save_torch,
    sha256_hex,
    sniff,
)

SPEC = {"input_width": 4, "hidden": [6], "activation": "relu", "task": "classification", "output_width": 3}


@pytest.fixture
def nothing_unpickles(monkeypatch):
    """Any attempt to unpickle or torch.load fails the test loudly."""

    def forbidden(*args, **kwargs):
        raise AssertionError("something tried to unpickle an uploaded file")

    for target, name in [(pickle, "loads"), (pickle, "load"), (pickle, "Unpickler"), (torch, "load"),
                         (joblib, "load"), (np, "load"), (skops.io, "loads")]:  # fmt: skip
        monkeypatch.setattr(target, name, forbidden)


def trained_module():
    torch.manual_seed(0)
    return build(SPEC)


def test_safetensors_round_trip_gives_identical_predictions():
    module = trained_module().eval()
    data = save_torch(module, SPEC)
    loaded, spec = load_torch(data)
    x = torch.randn(16, 4)
    assert spec["output_width"] == 3
    assert torch.equal(module(x), loaded(x))
    # the same, with the spec given as a separate JSON upload
    loaded_again, _ = load_torch(data, json.dumps(SPEC).encode())
    assert torch.equal(module(x), loaded_again(x))
    assert sha256_hex(data) == sha256_hex(save_torch(module, SPEC))


def test_weights_that_do_not_match_the_spec_are_refused():
    data = save_torch(trained_module(), SPEC)
    with pytest.raises(
        ArtifactError, match=r"tensor hidden.0.weight has shape \[6, 4\], but the spec makes it"
    ):
        load_torch(data, {**SPEC, "input_width": 5})
    with pytest.raises(ArtifactError, match=r"missing hidden\.1\.bias, hidden\.1\.weight"):
        load_torch(data, {**SPEC, "hidden": [6, 6]})
    with pytest.raises(ArtifactError, match="architecture spec: activation must be one of"):
        load_torch(data, {**SPEC, "activation": "mystery"})


def test_weights_with_nan_are_refused():
    module = trained_module()
    with torch.no_grad():
        module.output.bias[1] = float("nan")
    with pytest.raises(ArtifactError, match=r"tensor output\.bias holds NaN or infinite values"):
        load_torch(save_torch(module, SPEC))


def test_weights_without_any_spec_are_refused():
    from safetensors.torch import save

    data = save({k: v.contiguous() for k, v in trained_module().state_dict().items()})
    with pytest.raises(ArtifactError, match="upload the architecture spec"):
        load_torch(data)
    assert load_torch(data, SPEC)[1]["hidden"] == [6]


def test_a_pickle_is_refused_without_being_loaded(nothing_unpickles):
    for protocol in (2, 4, 5):
        with pytest.raises(ArtifactError, match=f"Python pickle \\(protocol {protocol}\\)") as refused:
            load_torch(pickle.dumps({"weights": [1, 2, 3]}, protocol=protocol), SPEC)
        assert PICKLE_WHY in str(refused.value)
    with pytest.raises(ArtifactError, match="protocol 0 or 1"):
        sniff(pickle.dumps([1, 2], protocol=0))


def test_a_joblib_file_is_refused_without_being_loaded(nothing_unpickles):
    model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    for compress in (0, 3, ("gzip", 3), ("bz2", 3), ("xz", 3), ("lzma", 3)):
        buffer = io.BytesIO()
        joblib.dump(model, buffer, compress=compress)
        with pytest.raises(ArtifactError, match="pickle") as refused:
            load_sklearn(buffer.getvalue())
        assert PICKLE_WHY in str(refused.value)


def test_a_torch_save_file_is_refused_without_being_loaded(nothing_unpickles):
    buffer = io.BytesIO()
    torch.save(trained_module().state_dict(), buffer)
    with pytest.raises(ArtifactError, match=r"torch.save file \(a zip holding data.pkl\)") as refused:
        load_torch(buffer.getvalue(), SPEC)
    assert PICKLE_WHY in str(refused.value)


@pytest.mark.parametrize(
    "data",
    [b"hello world, not a model", b"\x93NUMPY\x01\x00v\x00{'descr': '<f8'}", struct.pack("<Q", 5) + b"{bad}"],
)
def test_unknown_bytes_are_refused(data, nothing_unpickles):
    with pytest.raises(ArtifactError, match="unknown model file format"):
        sniff(data)


def test_a_file_over_the_size_limit_is_refused():
    data = save_torch(trained_module(), SPEC)
    with pytest.raises(
        ArtifactError, match=f"the model file is {len(data):,} bytes; at most 100 are accepted"
    ):
        load_torch(data, max_bytes=100)


def test_skops_round_trip_of_an_allowed_model():
    x = np.random.default_rng(0).normal(size=(50, 3))
    model = LogisticRegression().fit(x, x[:, 0] > 0)
    loaded = load_sklearn(save_sklearn(model))
    assert np.array_equal(loaded.predict_proba(x), model.predict_proba(x))


@pytest.mark.parametrize(
    ("model", "named"),
    [
        (KNeighborsClassifier(n_neighbors=1), "KNeighborsClassifier"),
        (make_pipeline(FunctionTransformer(np.log1p), LogisticRegression()), "Pipeline"),
    ],
)
def test_a_skops_file_with_a_type_off_the_allow_list_is_refused_before_loading(
    model, named, nothing_unpickles
):
    x = np.abs(np.random.default_rng(0).normal(size=(20, 2)))
    model.fit(x, x[:, 0] > 1)
    data = skops.io.dumps(model)
    with pytest.raises(ArtifactError, match=f"holds type\\(s\\) this platform does not load: .*{named}"):
        load_sklearn(data)


def test_a_skops_file_is_not_taken_as_weights_nor_weights_as_skops():
    model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    with pytest.raises(ArtifactError, match="PyTorch weights must be a safetensors file"):
        load_torch(save_sklearn(model), SPEC)
    with pytest.raises(ArtifactError, match="scikit-learn models must be skops files"):
        load_sklearn(save_torch(trained_module(), SPEC))


def test_a_zip_bomb_is_not_opened():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("schema.json", b" " * 5_000_000)
    with pytest.raises(ArtifactError, match="the zip archive expands to 5,000,000 bytes"):
        sniff(buffer.getvalue(), max_bytes=100_000)
