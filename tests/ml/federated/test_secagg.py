import hashlib

import numpy as np
import pytest

from ml.federated import secagg
from ml.federated import tensors as T
from ml.federated.aggregate import Update, aggregate, fedavg
from ml.federated.tensors import UpdateError

SHAPES = {"hidden.0.weight": (8, 5), "hidden.0.bias": (8,), "output.weight": (3, 8), "output.bias": (3,)}
SALT = hashlib.sha256(b"federation=7 round=2").digest()


def _round(n_parties: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    deltas = [
        {k: rng.normal(0, 0.1, size=s).astype(np.float32) for k, s in SHAPES.items()}
        for _ in range(n_parties)
    ]
    counts = [int(c) for c in rng.integers(10, 500, size=n_parties)]
    keys = [secagg.keypair() for _ in range(n_parties)]
    roster = {party: public for party, (_, public) in enumerate(keys, start=11)}
    masked = [
        secagg.mask(d, num_examples=n, me=party, private=keys[party - 11][0], peers=roster, round_salt=SALT)
        for party, d, n in zip(roster, deltas, counts, strict=True)
    ]
    return deltas, counts, masked


def test_the_sum_of_masked_updates_is_the_plain_weighted_mean_within_float_tolerance():
    deltas, counts, masked = _round()
    mean = secagg.unmask_sum(masked, sum(counts))
    plain = fedavg([[d[k] for k in sorted(SHAPES)] for d in deltas], counts)
    for k, want in zip(sorted(SHAPES), plain, strict=True):
        np.testing.assert_allclose(mean[k], want, rtol=0, atol=1e-6)
        assert mean[k].dtype == np.float32


def test_the_unmasked_mean_aggregates_like_fedavg_over_the_plain_updates():
    deltas, counts, masked = _round(seed=1)
    glob = {k: np.zeros(s, np.float32) for k, s in SHAPES.items()}
    summed = Update(id="sum", tensors=secagg.unmask_sum(masked, sum(counts)), num_examples=sum(counts))
    via_secagg = aggregate(strategy="fedavg", options={}, global_tensors=glob, updates=[summed])
    plain = [Update(id=T.digest(d), tensors=d, num_examples=n) for d, n in zip(deltas, counts, strict=True)]
    direct = aggregate(strategy="fedavg", options={}, global_tensors=glob, updates=plain)
    for k in SHAPES:
        np.testing.assert_allclose(via_secagg.new_global[k], direct.new_global[k], atol=1e-6)


def test_one_masked_update_reveals_nothing_obvious_about_the_delta():
    deltas, counts, masked = _round()
    alone = secagg.from_fixed(np.concatenate([masked[0][k].ravel() for k in sorted(SHAPES)])) / counts[0]
    plain = np.concatenate([deltas[0][k].ravel() for k in sorted(SHAPES)]).astype(np.float64)
    # The masks are uniform over 2^64: read back as numbers they are astronomically far from the delta.
    assert np.median(np.abs(alone - plain)) > 1e6
    assert abs(np.corrcoef(alone, plain)[0, 1]) < 0.5


def test_a_dropped_party_leaves_its_masks_in_and_the_sum_is_wrong():
    deltas, counts, masked = _round()
    partial = secagg.unmask_sum(masked[:-1], sum(counts[:-1]))
    plain = fedavg([[d[k] for k in sorted(SHAPES)] for d in deltas[:-1]], counts[:-1])
    error = max(float(np.abs(partial[k] - p).max()) for k, p in zip(sorted(SHAPES), plain, strict=True))
    assert error > 1e3  # so the platform restarts the round without the dropped party


def test_pairs_derive_the_same_seed_from_either_side_and_a_new_one_each_round():
    (a, pa), (b, pb) = secagg.keypair(), secagg.keypair()
    ab = secagg.pair_seed(a, pb, me=1, peer=2, round_salt=SALT)
    assert ab == secagg.pair_seed(b, pa, me=2, peer=1, round_salt=SALT)
    assert ab != secagg.pair_seed(a, pb, me=1, peer=2, round_salt=b"another round")


def test_masked_updates_round_trip_through_safetensors_and_their_digest():
    _, _, masked = _round()
    data = secagg.encode_masked(masked[0])
    back = secagg.decode_masked(data, shapes=SHAPES, max_bytes=len(data))
    assert secagg.masked_digest(back) == secagg.masked_digest(masked[0])
    assert all(back[k].dtype == np.uint64 and (back[k] == masked[0][k]).all() for k in SHAPES)
    assert secagg.masked_digest(masked[0]) != secagg.masked_digest(masked[1])


def test_bad_masked_files_are_refused_with_a_reason():
    _, _, masked = _round()
    data = secagg.encode_masked(masked[0])
    with pytest.raises(UpdateError, match="limit"):
        secagg.decode_masked(data, shapes=SHAPES, max_bytes=len(data) - 1)
    with pytest.raises(UpdateError, match="not a safetensors"):
        secagg.decode_masked(b"garbage" * 20, shapes=SHAPES, max_bytes=10_000)
    with pytest.raises(UpdateError, match="shape"):
        secagg.decode_masked(data, shapes={**SHAPES, "output.bias": (4,)}, max_bytes=len(data))
    plain = T.encode({k: np.zeros(s, np.float32) for k, s in SHAPES.items()})
    with pytest.raises(UpdateError, match="uint64"):
        secagg.decode_masked(plain, shapes=SHAPES, max_bytes=len(plain))
    with pytest.raises(UpdateError, match="names"):
        secagg.decode_masked(data, shapes={"w": (1,)}, max_bytes=len(data))


def test_masking_enforces_the_norm_bound_and_finite_values_on_the_partys_side():
    private, public = secagg.keypair()
    big = {"w": np.full(4, 10.0, np.float32)}
    with pytest.raises(UpdateError, match="L2 norm"):
        secagg.mask(
            big, num_examples=5, me=1, private=private, peers={2: public}, round_salt=SALT, norm_bound=1
        )
    with pytest.raises(UpdateError, match="NaN"):
        secagg.mask({"w": np.array([np.nan], np.float32)}, num_examples=5, me=1, private=private, peers={},
                    round_salt=SALT)  # fmt: skip
    with pytest.raises(ValueError, match="base64"):
        secagg.mask(big, num_examples=5, me=1, private=private, peers={2: "not a key"}, round_salt=SALT)
