import math

import numpy as np
import pytest

from ml.dp import epsilon_from_rdp, rdp_gaussian
from ml.federated import tensors as T
from ml.federated.privacy import clip_and_noise, epsilon_spent, noisy_norm_bound, privacy_check
from ml.privacy import PrivacyError


def _delta(scale: float = 1.0) -> T.Tensors:
    rng = np.random.default_rng(0)
    return {"a": (rng.normal(size=(50, 20)) * scale).astype(np.float32), "b": np.ones(20, np.float32) * scale}


def test_an_update_above_the_clip_norm_is_scaled_down_to_it_and_one_below_is_untouched():
    big, small = _delta(10.0), _delta(0.01)
    clipped = clip_and_noise(big, clip_norm=1.0, noise_multiplier=0.0, seed=0)
    assert T.l2_norm(clipped) == pytest.approx(1.0, rel=1e-6)
    np.testing.assert_allclose(clipped["a"] / big["a"], clipped["b"][0] / big["b"][0], rtol=1e-5)
    kept = clip_and_noise(small, clip_norm=1.0, noise_multiplier=0.0, seed=0)
    assert T.digest(kept) == T.digest(small)


def test_the_noise_has_the_standard_deviation_of_multiplier_times_clip_and_repeats_with_the_seed():
    zero = {"a": np.zeros((200, 100), np.float32)}
    noisy = clip_and_noise(zero, clip_norm=0.5, noise_multiplier=2.0, seed=3)
    assert float(noisy["a"].std()) == pytest.approx(1.0, rel=0.02)
    assert abs(float(noisy["a"].mean())) < 0.02
    again = clip_and_noise(zero, clip_norm=0.5, noise_multiplier=2.0, seed=3)
    other = clip_and_noise(zero, clip_norm=0.5, noise_multiplier=2.0, seed=4)
    fresh = clip_and_noise(zero, clip_norm=0.5, noise_multiplier=2.0, seed=None)
    assert T.digest(noisy) == T.digest(again) != T.digest(other) != T.digest(fresh)


def test_a_noised_update_stays_within_the_noisy_norm_bound():
    delta = _delta(10.0)
    n = sum(a.size for a in delta.values())
    bound = noisy_norm_bound(clip_norm=1.0, noise_multiplier=1.0, n_params=n)
    for seed in range(20):
        assert T.l2_norm(clip_and_noise(delta, clip_norm=1.0, noise_multiplier=1.0, seed=seed)) <= bound


def test_epsilon_grows_with_rounds_and_shrinks_with_noise():
    assert epsilon_spent(noise_multiplier=1.0, rounds=0, delta=1e-5) == 0.0
    one = epsilon_spent(noise_multiplier=1.0, rounds=1, delta=1e-5)
    ten = epsilon_spent(noise_multiplier=1.0, rounds=10, delta=1e-5)
    quiet = epsilon_spent(noise_multiplier=4.0, rounds=10, delta=1e-5)
    assert 0 < quiet < one < ten
    # The Gaussian mechanism's classic bound sqrt(2 ln(1.25/δ))/z is looser than the RDP accountant's.
    assert one < math.sqrt(2 * math.log(1.25 / 1e-5))
    assert ten == epsilon_from_rdp(10 * rdp_gaussian(1.0), 1e-5)[0]


def test_privacy_settings_get_a_default_delta_and_none_means_off():
    assert privacy_check(None) is None
    assert privacy_check({"clip_norm": 1, "noise_multiplier": 1.1}) == {
        "clip_norm": 1.0,
        "noise_multiplier": 1.1,
        "delta": 1e-5,
    }


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"noise_multiplier": 1.0}, "need clip_norm"),
        ({"clip_norm": 0, "noise_multiplier": 1.0}, "clip_norm must be in (0, 1e+06]"),
        ({"clip_norm": math.inf, "noise_multiplier": 1.0}, "clip_norm must be in"),
        ({"clip_norm": 1.0, "noise_multiplier": math.nan}, "noise_multiplier must be in"),
        ({"clip_norm": 1.0, "noise_multiplier": 10**400}, "noise_multiplier must be in"),
        ({"clip_norm": 1.0, "noise_multiplier": "1"}, "noise_multiplier must be a number"),
        ({"clip_norm": 1.0, "noise_multiplier": 1.0, "delta": 0.5}, "delta must be in (0, 0.001]"),
        ({"clip_norm": 1.0, "noise_multiplier": 1.0, "epsilon": 3}, "unknown privacy setting(s): epsilon"),
        ([1], "must be an object"),
    ],
)
def test_bad_privacy_settings_are_refused_with_a_message(given, message):
    with pytest.raises(PrivacyError) as err:
        privacy_check(given)
    assert message in str(err.value)
