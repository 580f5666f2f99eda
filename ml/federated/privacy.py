"""Differential privacy on the party's side: each update is clipped to an L2 norm and Gaussian noise is added
before it leaves the party (DP-FedAvg, McMahan et al. 2018, with the noise added locally).

One party's update in one round is a Gaussian mechanism of L2 sensitivity `clip_norm` with respect to its whole
dataset (present or absent), so its Rényi DP is alpha / (2 z²) for noise multiplier z; the rounds it takes part
in compose by adding the curves (`ml.dp`), converted to (ε, δ) as Opacus does. No amplification by sampling is
claimed: every admitted party is assumed to train in every round.
"""

import math
from typing import Any

import numpy as np

from ml.dp import epsilon_from_rdp, rdp_gaussian
from ml.federated import tensors as T
from ml.federated.tensors import Tensors
from ml.privacy import PrivacyError

DEFAULT_DELTA = 1e-5
_KEYS = ("clip_norm", "noise_multiplier", "delta")


def clip_and_noise(delta: Tensors, *, clip_norm: float, noise_multiplier: float, seed: int | None) -> Tensors:
    """The update scaled down to L2 norm `clip_norm` (if above) plus N(0, (noise_multiplier·clip_norm)²) noise
    on every coordinate. A party must pass a secret seed (or None, for the OS's entropy): whoever knows the seed
    can subtract the noise; fixed seeds are for tests."""
    norm = T.l2_norm(delta)
    factor = min(1.0, clip_norm / norm) if norm > 0 else 1.0
    rng = np.random.default_rng(seed)
    std = noise_multiplier * clip_norm
    out = {}
    for name, array in T.canonical(delta).items():  # name order, so a seed gives the same noise everywhere
        noise = rng.normal(0.0, std, size=array.shape) if std > 0 else 0.0
        out[name] = (array.astype(np.float64) * factor + noise).astype(np.float32)
    return out


def noisy_norm_bound(*, clip_norm: float, noise_multiplier: float, n_params: int) -> float:
    """A norm bound that a clipped and noised update exceeds with chance below 1e-8: the clip plus the noise's
    norm, which concentrates at std·√d (Gaussian concentration, t = 6)."""
    return clip_norm + noise_multiplier * clip_norm * (math.sqrt(n_params) + 6.0)


def epsilon_spent(*, noise_multiplier: float, rounds: int, delta: float) -> float:
    """The ε one party has spent after `rounds` noised updates, at `delta` (0 before any)."""
    if rounds <= 0:
        return 0.0
    return epsilon_from_rdp(rounds * rdp_gaussian(noise_multiplier), delta)[0]


def _number(settings: dict, key: str, low: float, high: float) -> float:
    value = settings[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PrivacyError(f"{key} must be a number, not {type(value).__name__}")
    value = float(value) if abs(value) < 1e300 else math.inf
    if not (math.isfinite(value) and low < value <= high):
        raise PrivacyError(f"{key} must be in ({low:g}, {high:g}], not {value!r}")
    return value


def privacy_check(settings: Any) -> dict | None:
    """The differential-privacy settings with defaults filled in (None: off), or PrivacyError naming the
    field: clip_norm in (0, 1e6], noise_multiplier in (0, 100], delta in (0, 0.001]."""
    if settings is None:
        return None
    if not isinstance(settings, dict):
        raise PrivacyError("the privacy settings must be an object or null")
    unknown = sorted(str(k) for k in settings if k not in _KEYS)
    if unknown:
        raise PrivacyError(f"unknown privacy setting(s): {', '.join(unknown)} (allowed: {', '.join(_KEYS)})")
    missing = [k for k in ("clip_norm", "noise_multiplier") if k not in settings]
    if missing:
        raise PrivacyError(f"the privacy settings need {' and '.join(missing)}")
    out = {"delta": DEFAULT_DELTA, **settings}
    return {
        "clip_norm": _number(out, "clip_norm", 0, 1e6),
        "noise_multiplier": _number(out, "noise_multiplier", 0, 100),
        "delta": _number(out, "delta", 0, 1e-3),
    }
