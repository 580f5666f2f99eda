"""Differentially private training: a Rényi-DP accountant, DP-SGD, and the budget one training run spends.

Neighbouring datasets differ by one row (added or removed). Every release during a private training is a
Gaussian mechanism, and they compose in Rényi DP (Mironov 2017), the curve over `ORDERS` adding up:

- the feature schema's histograms (`ml.features`): one Gaussian release, RDP alpha/(2z²) for noise multiplier z;
- the levels and classes named in the schema: noisy counts kept above a threshold, which adds to δ the chance
  that a level held by one row passes it (Gaussian partition selection);
- DP-SGD (Abadi et al. 2016): each step takes a Poisson sample of the rows (rate q), clips each row's gradient
  to L2 norm C, sums, and adds N(0, (zC)²) noise; its RDP is the subsampled Gaussian's (Mironov, Talwar & Zhang
  2019, computed as TF Privacy and Opacus do), times the number of steps.

The curve is turned into (ε, δ) by Balle et al. 2020 (Theorem 21), as Opacus does. The noise comes from seeded
PRNGs so that a training run can be repeated; like Opacus outside its secure mode, it does not defend against
floating-point attacks on the noise (Mironov 2012).
"""

import math
from collections.abc import Callable

import numpy as np
import torch
from scipy import special, stats
from torch.func import functional_call, grad, vmap

from ml.privacy import DELTA, PrivacyError

# Opacus's orders, and higher ones, which small ε and δ need.
ORDERS = np.array(
    [1 + x / 10.0 for x in range(1, 100)]
    + list(range(12, 64))
    + list(range(64, 256, 16))
    + [256, 384, 512, 1024],
    dtype=np.float64,
)
SCHEMA_SHARE = 0.1  # of ε, spent on the feature schema's histograms
SELECTION_SHARE = 0.25  # of δ, spent on naming levels and classes
PER_SAMPLE_FLOATS = 1 << 25  # per-sample gradients held at once (128 MB of float32)


def _log_add(x: float, y: float) -> float:
    low, high = min(x, y), max(x, y)
    return high if low == -math.inf else math.log1p(math.exp(low - high)) + high


def _log_sub(x: float, y: float) -> float:
    if y == -math.inf:
        return x
    if x <= y:
        return -math.inf
    try:
        return math.log(math.expm1(x - y)) + y
    except OverflowError:
        return x


def _log_a_int(q: float, sigma: float, alpha: int) -> float:
    i = np.arange(alpha + 1, dtype=np.float64)
    log_binom = special.gammaln(alpha + 1) - special.gammaln(i + 1) - special.gammaln(alpha - i + 1)
    terms = log_binom + i * math.log(q) + (alpha - i) * math.log1p(-q) + (i * i - i) / (2 * sigma**2)
    return float(special.logsumexp(terms))


def _log_erfc(x: float) -> float:
    return math.log(2) + float(special.log_ndtr(-x * math.sqrt(2)))


def _log_a_frac(q: float, sigma: float, alpha: float) -> float:
    # The two halves of A_alpha, integrals over (-inf, z0] and [z0, inf), summed as series in log space.
    log_a0 = log_a1 = -math.inf
    z0 = sigma**2 * math.log(1 / q - 1) + 0.5
    i = 0
    while True:
        coef = special.binom(alpha, i)
        log_coef = math.log(abs(coef))
        j = alpha - i
        log_t0 = log_coef + i * math.log(q) + j * math.log1p(-q)
        log_t1 = log_coef + j * math.log(q) + i * math.log1p(-q)
        log_e0 = math.log(0.5) + _log_erfc((i - z0) / (math.sqrt(2) * sigma))
        log_e1 = math.log(0.5) + _log_erfc((z0 - j) / (math.sqrt(2) * sigma))
        log_s0 = log_t0 + (i * i - i) / (2 * sigma**2) + log_e0
        log_s1 = log_t1 + (j * j - j) / (2 * sigma**2) + log_e1
        if coef > 0:
            log_a0, log_a1 = _log_add(log_a0, log_s0), _log_add(log_a1, log_s1)
        else:
            log_a0, log_a1 = _log_sub(log_a0, log_s0), _log_sub(log_a1, log_s1)
        i += 1
        if max(log_s0, log_s1) < -30:
            return _log_add(log_a0, log_a1)


def rdp_gaussian(noise_multiplier: float, orders: np.ndarray = ORDERS) -> np.ndarray:
    """RDP of one Gaussian release whose noise is `noise_multiplier` times its L2 sensitivity: alpha/(2z²)."""
    return np.asarray(orders, dtype=np.float64) / (2 * noise_multiplier**2)


def rdp_subsampled_gaussian(
    q: float, noise_multiplier: float, steps: int = 1, orders: np.ndarray = ORDERS
) -> np.ndarray:
    """RDP of `steps` rounds of the Poisson-subsampled Gaussian mechanism (sampling rate `q`)."""
    if not 0 <= q <= 1:
        raise ValueError(f"the sampling rate must be in [0, 1], not {q}")
    orders = np.asarray(orders, dtype=np.float64)
    if q == 0:
        return np.zeros_like(orders)
    if noise_multiplier <= 0:
        return np.full_like(orders, math.inf)
    if q == 1:
        return steps * rdp_gaussian(noise_multiplier, orders)
    out = np.empty_like(orders)
    for k, alpha in enumerate(orders):
        log_a = (
            _log_a_int(q, noise_multiplier, int(alpha))
            if float(alpha).is_integer()
            else _log_a_frac(q, noise_multiplier, float(alpha))
        )
        out[k] = log_a / (alpha - 1)
    return steps * out


def epsilon_from_rdp(rdp: np.ndarray, delta: float, orders: np.ndarray = ORDERS) -> tuple[float, float]:
    """The smallest ε over the orders for which an RDP curve gives (ε, δ)-DP, and that order."""
    orders = np.asarray(orders, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        eps = (
            np.asarray(rdp)
            - (math.log(delta) + np.log(orders)) / (orders - 1)
            + np.log((orders - 1) / orders)
        )
    if np.isnan(eps).all():
        return math.inf, math.nan
    best = int(np.nanargmin(eps))
    return max(float(eps[best]), 0.0), float(orders[best])


class PrivacyBudget:
    """The (ε, δ) one private training may spend, and what it has spent so far, as an RDP curve plus the
    δ of the thresholds that name levels."""

    def __init__(self, epsilon: float, delta: float = DELTA) -> None:
        if not (isinstance(epsilon, int | float) and math.isfinite(epsilon) and 0 < epsilon <= 100):
            raise PrivacyError(f"ε must be a number in (0, 100], not {epsilon!r}")
        if not (isinstance(delta, int | float) and 0 < delta < 1e-3):
            raise PrivacyError(f"δ must be in (0, 0.001), not {delta!r}")
        self.epsilon, self.delta = float(epsilon), float(delta)
        self.rdp = np.zeros_like(ORDERS)
        self.selection_delta = 0.0
        self.releases: list[dict] = []

    def spent(self, rdp: np.ndarray | None = None) -> float:
        """ε spent so far (or if `rdp` were spent as well), at this budget's δ less the thresholds' δ."""
        total = self.rdp if rdp is None else self.rdp + rdp
        return epsilon_from_rdp(total, self.delta - self.selection_delta)[0]

    def _record(self, rdp: np.ndarray, entry: dict) -> None:
        if self.spent(rdp) > self.epsilon * (1 + 1e-9):
            raise PrivacyError(f"the privacy budget (ε = {self.epsilon:g}) cannot pay for {entry['what']}")
        self.rdp = self.rdp + rdp
        self.releases.append(entry)

    def spend_gaussian(self, noise_multiplier: float, *, what: str) -> None:
        self._record(rdp_gaussian(noise_multiplier), {"what": what, "noise_multiplier": noise_multiplier})

    def spend_subsampled_gaussian(self, q: float, noise_multiplier: float, steps: int, *, what: str) -> None:
        rdp = rdp_subsampled_gaussian(q, noise_multiplier, steps)
        self._record(
            rdp, {"what": what, "noise_multiplier": noise_multiplier, "sampling_rate": q, "steps": steps}
        )

    def spend_selection_delta(self, delta: float, *, what: str) -> None:
        if self.selection_delta + delta >= self.delta:
            raise PrivacyError(f"the privacy budget's δ cannot pay for {what}")
        self.selection_delta += delta
        self.releases.append({"what": what, "delta": delta})

    def schema_noise_multiplier(self) -> float:
        """The noise multiplier of the schema's one Gaussian release: alone, it would cost `SCHEMA_SHARE` of ε."""
        target = SCHEMA_SHARE * self.epsilon
        return _search(
            lambda z: epsilon_from_rdp(rdp_gaussian(z), self.delta * (1 - SELECTION_SHARE))[0], target
        )

    def sgd_noise_multiplier(self, q: float, steps: int) -> float:
        """The smallest noise multiplier (to 0.1%) with which `steps` DP-SGD steps at rate `q` fit in what is
        left of the budget."""
        if self.spent() >= self.epsilon:
            raise PrivacyError("the privacy budget is spent before training starts")
        return _search(lambda z: self.spent(rdp_subsampled_gaussian(q, z, steps)), self.epsilon)

    def summary(self) -> dict:
        spent = self.spent()
        return {
            "epsilon": self.epsilon,
            "delta": self.delta,
            "epsilon_spent": round(spent, 6),
            "accounting": "Rényi DP over the releases below, converted to (ε, δ) by Balle et al. 2020",
            "releases": [
                {k: (round(v, 9) if isinstance(v, float) else v) for k, v in r.items()} for r in self.releases
            ],
        }


def _search(cost: Callable[[float], float], target: float) -> float:
    """The smallest noise multiplier z (to 0.1%) with cost(z) <= target, for a cost decreasing in z."""
    low, high = 0.05, 1.0
    while cost(high) > target:
        low, high = high, high * 2
        if high > 1e6:
            raise PrivacyError("no amount of noise fits this privacy budget")
    if cost(low) <= target:
        return low
    while high / low > 1.001:
        mid = math.sqrt(low * high)
        low, high = (low, mid) if cost(mid) <= target else (mid, high)
    return high


def selection_threshold(sigma: float, delta: float, columns: int, min_count: int) -> float:
    """The noisy count a level needs to be named: a level held by one row passes it with chance at most
    `delta` / `columns`, so that one row changes the named levels of all columns with chance at most `delta`."""
    return max(float(min_count), 1.0 + sigma * float(stats.norm.isf(delta / max(columns, 1))))


def dp_sgd(
    module: torch.nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    sampling_rate: float,
    steps: int,
    noise_multiplier: float,
    clip: float,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    on_step: Callable[[int], None] | None = None,
) -> None:
    """Train `module` in place by DP-SGD: each step draws each row with chance `sampling_rate`, clips each
    drawn row's gradient to L2 norm `clip` (per-sample gradients by torch.func), sums them, adds Gaussian noise of
    standard deviation `noise_multiplier * clip` to every coordinate, and divides by the expected batch size.
    `loss_fn(output, target)` must be the per-row loss of a batch of one row. `generator` lives on x's device."""
    n = x.shape[0]
    expected = max(sampling_rate * n, 1.0)
    names = [name for name, p in module.named_parameters() if p.requires_grad]
    params = dict(module.named_parameters())
    n_params = sum(p.numel() for p in params.values())
    chunk = max(1, PER_SAMPLE_FLOATS // max(n_params, 1))

    def row_loss(weights: dict, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        return loss_fn(functional_call(module, weights, (xi.unsqueeze(0),)), yi.unsqueeze(0))

    per_sample = vmap(grad(row_loss), in_dims=(None, 0, 0), randomness="different")
    module.train()
    for step in range(steps):
        drawn = torch.nonzero(
            torch.rand(n, generator=generator, device=x.device) < sampling_rate, as_tuple=False
        ).flatten()
        detached = {k: v.detach() for k, v in params.items()}
        summed = {k: torch.zeros_like(v) for k, v in detached.items()}
        for lo in range(0, drawn.numel(), chunk):
            idx = drawn[lo : lo + chunk]
            grads = per_sample(detached, x[idx], y[idx])
            norms = torch.sqrt(sum(g.reshape(g.shape[0], -1).pow(2).sum(dim=1) for g in grads.values()))
            factor = (clip / (norms + 1e-12)).clamp(max=1.0)
            for k, g in grads.items():
                summed[k] += torch.einsum("i,i...->...", factor, g)
        for k in names:
            noise = torch.normal(0.0, noise_multiplier * clip, size=summed[k].shape, generator=generator,
                                 device=x.device)  # fmt: skip
            params[k].grad = (summed[k] + noise) / expected
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if on_step is not None:
            on_step(step)
