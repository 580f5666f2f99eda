"""Differential privacy for compute-only results: OpenDP's mechanisms, composed in zero-concentrated DP.

Two datasets are neighbours when one has a row the other lacks. Every release is OpenDP's Gaussian mechanism
(`make_gaussian`) on a vector of sums whose L2 sensitivity follows from the clipped features (`row_norm`). The
releases of one analysis compose in zCDP by adding their ρ (Bun & Steinke 2016); the analysis's (ε, δ) is turned
into that ρ by OpenDP's own `make_zCDP_to_approxDP` conversion. Only aggregates pass through here: no row does.
"""

import math
from functools import lru_cache

import numpy as np

DELTA = 1e-8  # per analysis; far below 1/n for any table the platform takes
CLIP = 3.0  # standardized numbers are clipped to [-CLIP, CLIP] before any private release
MIN_COUNT = 5  # levels held by fewer rows than this are never named
IDENTIFIER_SHARE = 0.5  # a text column with more distinct values than this share of its rows is an identifier
OTHER = "(other)"


class PrivacyError(ValueError):
    """A release the budget cannot pay for, or privacy parameters that make no sense; meant for the user."""


def _opendp():
    import opendp.prelude as dp

    dp.enable_features("contrib")
    return dp


@lru_cache(maxsize=256)
def rho_for(epsilon: float, delta: float = DELTA) -> float:
    """The largest zCDP ρ whose conversion to approximate DP, by OpenDP, is (`epsilon`, `delta`)-DP."""
    if not (math.isfinite(epsilon) and epsilon > 0) or not 0 < delta < 1:
        raise PrivacyError(f"ε must be positive and δ in (0, 1); got ε={epsilon}, δ={delta}")
    dp = _opendp()
    space = dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float)

    def chain(scale: float):
        return dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(dp.m.make_gaussian(*space, scale=scale)), delta)

    scale = dp.binary_search_param(chain, d_in=1.0, d_out=(float(epsilon), float(delta)))
    return float(dp.m.make_gaussian(*space, scale=scale).map(1.0))


class Budget:
    """One analysis's privacy budget: (ε, δ) as zCDP ρ, handed out to Gaussian releases by share."""

    def __init__(self, epsilon: float, delta: float = DELTA) -> None:
        self.epsilon, self.delta = float(epsilon), float(delta)
        self.rho = rho_for(self.epsilon, self.delta)
        self.spent = 0.0
        self.releases: list[dict] = []

    def gaussian(self, values: np.ndarray, *, sensitivity: float, share: float, what: str) -> np.ndarray:
        """`values` plus Gaussian noise from OpenDP, calibrated so that this release costs `share` of ρ when
        one row moves `values` by at most `sensitivity` in L2 norm. Returns an array of the same shape."""
        rho = self.rho * share
        if rho <= 0 or self.spent + rho > self.rho * (1 + 1e-9):
            raise PrivacyError(f"the analysis's privacy budget cannot pay for {what}")
        dp = _opendp()
        space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.l2_distance(T=float)
        scale = sensitivity / math.sqrt(2 * rho)
        measurement = dp.m.make_gaussian(*space, scale=scale)
        while measurement.map(float(sensitivity)) > rho:  # OpenDP rounds conservatively: nudge the scale up
            scale *= 1.0 + 1e-6
            measurement = dp.m.make_gaussian(*space, scale=scale)
        values = np.asarray(values, dtype=np.float64)
        if not np.isfinite(values).all():
            raise PrivacyError(f"{what} is not finite")
        noisy = np.asarray(measurement(values.ravel().tolist()), dtype=np.float64).reshape(values.shape)
        self.spent += rho
        self.releases.append({"what": what, "sensitivity": float(sensitivity), "sigma": float(scale),
                              "rho": rho})  # fmt: skip
        return noisy

    def sigma(self, what: str) -> float:
        """The noise scale of the last release named `what`."""
        return next(r["sigma"] for r in reversed(self.releases) if r["what"] == what)

    def summary(self) -> dict:
        return {
            "epsilon": self.epsilon,
            "delta": self.delta,
            "rho": self.rho,
            "accounting": "zCDP, converted to (ε, δ) by OpenDP",
            "mechanism": "Gaussian (OpenDP make_gaussian)",
            "releases": [
                {k: (round(v, 9) if isinstance(v, float) else v) for k, v in r.items()} for r in self.releases
            ],
        }


def noisy_counts(budget: Budget, counts: np.ndarray, *, share: float, what: str) -> np.ndarray:
    """A histogram in which each row adds 1 to one cell (L2 sensitivity 1), released as whole counts >= 0."""
    noisy = budget.gaussian(counts.astype(np.float64), sensitivity=1.0, share=share, what=what)
    return np.maximum(np.rint(noisy), 0).astype(np.int64)
