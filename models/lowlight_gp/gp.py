"""Exact GP regression with a squared-exponential kernel, sized for the k cluster centres.

Hyper-parameters (length-scale, signal variance, noise) are gpytorch modules with gpytorch's
positivity constraints, fitted by maximising the exact log marginal likelihood with L-BFGS
(the GPML toolbox GPE builds on runs ``minimize`` for 100 evaluations). The likelihood is
evaluated with one float64 Cholesky per step and a closed-form gradient instead of gpytorch's
``ExactMarginalLogLikelihood`` (identical value, checked in the tests): the latter costs ~10 ms
of framework overhead per step at k = 200 and ~2 s per step at n = 2000 (GPE, full GP). Prediction is the posterior mean written as one batched kernel-matrix
product per chunk of query rows; gpytorch's predictive path is orders of magnitude slower for
the ~200k queries of a 256 x 256 RGB image.

A training row may stand for the mean of n_j observations (a k-means centre): its noise is then
s2 / n_j (``counts``), the standard heteroscedastic treatment of aggregated observations; with
fixed hyper-parameters this gives exactly the posterior of the n_j observations placed at the
row's input.
"""

from __future__ import annotations

import math
import warnings

import gpytorch
import numpy as np
import torch

_JITTERS = (0.0, 1e-8, 1e-6, 1e-4, 1e-2)
_LOG2E = 1.0 / math.log(2.0)
_EPS32 = float(torch.finfo(torch.float32).eps)


class GPConditioningWarning(UserWarning):
    """The fitted GP needs float64 (its posterior-mean terms cancel in float32)."""


def _even_rows(n: int, m: int | None) -> torch.Tensor | None:
    """``m`` evenly spaced row indices of ``n`` (the toolbox's grid sampling), None for all."""
    if m is None or n <= m:
        return None
    return torch.from_numpy(np.unique(np.round(np.linspace(0, n - 1, m)).astype(np.int64)))


class ExactSEGP:
    """Zero-mean GP on standardised targets: y = f(x) + eps, f ~ GP(0, s * exp(-|x-x'|^2 / 2l^2)).

    ``y`` may hold several outputs (k, m) that share the kernel and noise (the "patch" target
    layout); the marginal likelihood is then the sum over outputs.
    """

    def __init__(
        self,
        iterations: int = 50,
        min_noise: float = 1e-4,
        min_lengthscale: float = 1e-2,
        jitter: float = 1e-8,
        lengthscale_range: tuple[float, float] = (0.5, 10.0),
        max_outputscale: float = 100.0,
        max_noise: float = 1e3,
        hyper_rows: int | None = None,
        float32_tolerance: float = 2e-4,
    ) -> None:
        if iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {iterations}")
        lo, hi = (float(v) for v in lengthscale_range)
        if not 0.0 <= lo < hi:
            raise ValueError(f"lengthscale_range must be 0 <= low < high, got {lengthscale_range}")
        if hyper_rows is not None and hyper_rows < 2:
            raise ValueError(f"hyper_rows must be >= 2 or None, got {hyper_rows}")
        self.iterations = iterations
        self.jitter = jitter
        # Floors keep the marginal likelihood away from its degenerate interpolating optimum
        # (length-scale -> 0, noise -> 0) on 8-bit images with many duplicate patches: 1e-4 on
        # standardised targets is about the variance of 8-bit quantisation; a length-scale of
        # 0.01 is ~2.5 grey levels.
        self.min_lengthscale, self.min_noise = min_lengthscale, min_noise
        # Bounds relative to the training inputs (set per fit, see :meth:`_bounds`): below the
        # typical spacing of the inputs the posterior mean falls back to the prior mean between
        # them (the k = 10 collapse); far above their diameter, with an unbounded signal
        # variance, a near-linear reference drives (l, s) to (1e3, 1e6) and the prediction
        # cancels. Targets are standardised, so a signal variance of 100 is already extreme.
        self.lengthscale_range = (lo, hi)
        self.max_outputscale, self.max_noise = max_outputscale, max_noise
        self.hyper_rows, self.float32_tolerance = hyper_rows, float32_tolerance
        self._build(min_lengthscale, 1e6)
        self.alpha: torch.Tensor | None = None
        self.x_train: torch.Tensor | None = None
        self.bounds_hit: list[str] = []

    def _build(self, ls_low: float, ls_high: float) -> None:
        """gpytorch kernel and likelihood whose constraints are the bounds of this fit."""
        rbf = gpytorch.kernels.RBFKernel(
            lengthscale_constraint=gpytorch.constraints.Interval(ls_low, ls_high)
        )
        self.kernel = gpytorch.kernels.ScaleKernel(
            rbf, outputscale_constraint=gpytorch.constraints.Interval(1e-6, self.max_outputscale)
        ).double()
        self.likelihood = gpytorch.likelihoods.GaussianLikelihood(
            noise_constraint=gpytorch.constraints.Interval(self.min_noise, self.max_noise)
        ).double()

    def _bounds(self, sq_dist: torch.Tensor) -> tuple[float, float]:
        """Length-scale bounds from the training inputs: [lo * median nearest-neighbour
        distance, hi * diameter], never below ``min_lengthscale``."""
        lo, hi = self.lengthscale_range
        d = sq_dist.sqrt()
        diameter = float(d.max()) if d.numel() else 0.0
        off = d + torch.diag(torch.full((len(d),), float("inf"), dtype=d.dtype))
        nn = off.min(1).values
        nn = nn[torch.isfinite(nn) & (nn > 0)]
        spacing = float(nn.median()) if nn.numel() else 0.0
        low = max(self.min_lengthscale, lo * spacing)
        high = max(hi * diameter, 4.0 * low)
        return low, high

    # ---- hyper-parameters -------------------------------------------------------------
    @property
    def lengthscale(self) -> float:
        return float(self.kernel.base_kernel.lengthscale.item())

    @property
    def outputscale(self) -> float:
        return float(self.kernel.outputscale.item())

    @property
    def noise(self) -> float:
        return float(self.likelihood.noise.item())

    def _covariance(
        self,
        x: torch.Tensor,
        sq_dist: torch.Tensor | None = None,
        noise_scale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """K + noise * diag(noise_scale) + jitter I; the SE kernel from precomputed squared
        distances (they do not depend on the hyper-parameters, so each likelihood step is
        elementwise + Cholesky). ``noise_scale`` = 1/n_j for a point that is the mean of n_j
        observations (a cluster centre), 1 otherwise."""
        if sq_dist is None:
            sq_dist = torch.cdist(x, x).square()
        ls = self.kernel.base_kernel.lengthscale.reshape(())
        k = self.kernel.outputscale * torch.exp(-0.5 * sq_dist / ls**2)
        diag = self.likelihood.noise.reshape(()) * (
            torch.ones(len(x), dtype=x.dtype) if noise_scale is None else noise_scale
        )
        return k + torch.diag(diag + self.jitter)

    def neg_mll(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        sq_dist: torch.Tensor | None = None,
        counts: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """-log p(y | x) / (k * m), via one Cholesky; gpytorch's ExactMarginalLogLikelihood
        when ``counts`` is None. With ``counts``, row j is the mean of counts[j] observations
        with noise s2 each, so its noise is s2 / counts[j] (aggregated observations)."""
        scale = None if counts is None else 1.0 / counts
        return _GaussianNLL.apply(self._covariance(x, sq_dist, scale), y)

    def _init_from_data(self, sq_dist: torch.Tensor, low: float, high: float) -> None:
        """Length-scale = median pairwise distance (inside the bounds); unit signal variance;
        noise 1 %."""
        with torch.no_grad():
            off = sq_dist[~torch.eye(len(sq_dist), dtype=torch.bool)].sqrt()
            med = float(off.median()) if off.numel() else 1.0
            med = med if med > 1e-6 else 1.0
            # strictly inside (low, high): the Interval transform is a sigmoid
            self.kernel.base_kernel.lengthscale = min(max(med, 2.0 * low), 0.5 * (low + high))
            self.kernel.outputscale = 1.0
            self.likelihood.noise = 1e-2

    # ---- fit / predict ----------------------------------------------------------------
    def fit(
        self, x: torch.Tensor, y: torch.Tensor, counts: torch.Tensor | None = None
    ) -> ExactSEGP:
        """Fit hyper-parameters on (x (k, d), y (k,) or (k, m)) and cache the posterior weights.

        ``counts`` (k,) makes row j the mean of ``counts[j]`` observations (a k-means cluster
        of patch pairs): its noise is s2 / counts[j] in the likelihood and in the posterior,
        and the targets are centred on the mean of all the observations.
        """
        x = x.detach().to(torch.float64)
        y = y.detach().to(torch.float64)
        if y.ndim == 1:
            y = y[:, None]
        if x.ndim != 2 or len(x) != len(y) or len(x) < 2:
            raise ValueError(
                f"need >= 2 training points with x (k, d), y (k, m); got {tuple(x.shape)}, {tuple(y.shape)}"
            )
        if counts is not None:
            counts = counts.detach().to(torch.float64).reshape(-1)
            if len(counts) != len(x) or not bool((counts > 0).all()):
                raise ValueError("counts must hold one positive value per training point")
            self.y_mean = (counts[:, None] * y).sum(0, keepdim=True) / counts.sum()
        else:
            self.y_mean = y.mean(0, keepdim=True)
        std = float((y - self.y_mean).square().sum() / max(y.numel() - 1, 1)) ** 0.5
        self.y_std = std if std > 1e-8 else 1.0
        ys = (y - self.y_mean) / self.y_std
        sq_dist = torch.cdist(x, x).square()
        scale = torch.ones(len(x), dtype=x.dtype) if counts is None else 1.0 / counts
        # The GPML super-resolution toolbox GPE builds on fits the hyper-parameters on 100
        # grid-sampled rows and conditions on all of them (``hyper_rows``).
        fit_rows = _even_rows(len(x), self.hyper_rows)
        sub = sq_dist if fit_rows is None else sq_dist[fit_rows][:, fit_rows]
        low, high = self._bounds(sub)
        self._build(low, high)
        self._init_from_data(sub, low, high)
        if self.iterations > 0:
            if fit_rows is None:
                self._optimise(sq_dist, ys, scale)
            else:
                self._optimise(sub, ys[fit_rows], scale[fit_rows])
        self.bounds_hit = self._at_bounds(low, high)
        with torch.no_grad():
            chol = _cholesky(self._covariance(x, sq_dist, None if counts is None else scale))
            self.alpha = torch.cholesky_solve(ys, chol)
        self.x_train = x
        return self

    def _at_bounds(self, low: float, high: float) -> list[str]:
        """Names of the hyper-parameters that ended (within 1 %) at a bound of this fit."""
        hit = []
        for name, value, lo, hi in (
            ("lengthscale", self.lengthscale, low, high),
            ("outputscale", self.outputscale, 1e-6, self.max_outputscale),
            ("noise", self.noise, self.min_noise, self.max_noise),
        ):
            if value <= lo * 1.01 or value >= hi * 0.99:
                hit.append(f"{name}={value:.3g} (bounds {lo:.3g}..{hi:.3g})")
        return hit

    def cancellation(self) -> float:
        """sum_j s |alpha_j| in output units: how large the terms of the posterior-mean sum
        are; float32 loses about eps32 times this to cancellation."""
        if self.alpha is None:
            raise RuntimeError("call fit() before predict()")
        return float(self.alpha.abs().sum(0).max()) * self.outputscale * self.y_std

    def _raw(self) -> list[tuple[torch.nn.Parameter, gpytorch.constraints.Interval]]:
        """(raw parameter, constraint) of length-scale, signal variance and noise."""
        base = self.kernel.base_kernel
        noise = self.likelihood.noise_covar
        return [
            (base.raw_lengthscale, base.raw_lengthscale_constraint),
            (self.kernel.raw_outputscale, self.kernel.raw_outputscale_constraint),
            (noise.raw_noise, noise.raw_noise_constraint),
        ]

    def _optimise(self, sq_dist: torch.Tensor, ys: torch.Tensor, noise_scale: torch.Tensor) -> None:
        """L-BFGS on the raw (unconstrained) hyper-parameters with the closed-form gradient of
        :func:`_nll_and_grad`; autograd only maps the three constrained values to their raw
        parameters. Same objective and parameters as autograd through :meth:`neg_mll` (checked
        in the tests) at about half the time per step at k = 200 (no module or graph work on
        the k x k matrices)."""
        raws = self._raw()
        theta = torch.stack([r.detach().reshape(()) for r, _ in raws]).requires_grad_(True)
        opt = torch.optim.LBFGS(
            [theta], lr=1.0, max_iter=self.iterations, line_search_fn="strong_wolfe"
        )

        def closure() -> torch.Tensor:
            opt.zero_grad()
            values = [c.transform(theta[i]) for i, (_, c) in enumerate(raws)]
            loss, grads = _nll_and_grad(
                sq_dist, ys, noise_scale, *(float(v.detach()) for v in values), self.jitter
            )
            torch.autograd.backward(values, [torch.tensor(g, dtype=theta.dtype) for g in grads])
            return loss

        opt.step(closure)
        with torch.no_grad():
            for i, (raw, _) in enumerate(raws):
                raw.fill_(theta[i].item())

    @torch.no_grad()
    def predict(
        self, xq: torch.Tensor, chunk: int = 2048, dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """Posterior mean at (n, d) queries -> (n, m), as exp2(A' B'^T) @ alpha per chunk.

        With inputs centred on the training mean and divided by the length-scale,
        A' = [x, 1, -|x|^2/2] and B' = log2(e) [c, log s - |c|^2/2, 1] turn the squared
        distances and the signal variance into one (chunk x (d+2)) @ ((d+2) x k) product, then
        one exp2 (cheaper than exp, same values) and one (chunk x k) @ (k x m) product. Centring
        keeps the float32 cancellation error of the expanded distance small.

        ``dtype=None`` predicts in float32 unless its cancellation error
        (eps32 x :meth:`cancellation`) would exceed ``float32_tolerance`` (in target units,
        2e-4 ~ 1/20 of an 8-bit level), then in float64 with a warning.
        """
        if self.alpha is None or self.x_train is None:
            raise RuntimeError("call fit() before predict()")
        if dtype is None:
            dtype = torch.float32
            err = _EPS32 * self.cancellation()
            if err > self.float32_tolerance:
                dtype = torch.float64
                warnings.warn(
                    f"GP prediction in float64: float32 would lose ~{err:.2g} to cancellation "
                    f"(length-scale {self.lengthscale:.3g}, signal variance "
                    f"{self.outputscale:.3g}; hyper-parameters at a bound: "
                    f"{', '.join(self.bounds_hit) or 'none'})",
                    GPConditioningWarning,
                    stacklevel=3,
                )
        ls, s = self.lengthscale, self.outputscale
        centre = self.x_train.mean(0, keepdim=True)
        b = (self.x_train - centre) / ls
        bias = math.log(s) - 0.5 * (b * b).sum(1, keepdim=True)
        bt = torch.cat([b, bias, torch.ones_like(bias)], 1).T * _LOG2E
        bt = bt.to(dtype).contiguous()
        shift = (centre / ls).to(dtype)
        alpha = (self.alpha * self.y_std).to(dtype)
        mean = self.y_mean.to(dtype)
        out = torch.empty(len(xq), alpha.shape[1], dtype=dtype)
        ones = torch.ones(chunk, 1, dtype=dtype)
        for start in range(0, len(xq), chunk):
            a = xq[start : start + chunk].to(dtype) / ls - shift
            a = torch.cat([a, ones[: len(a)], -0.5 * (a * a).sum(1, keepdim=True)], 1)
            # Clamped at 2^-126 (~1e-38): denormal results of exp2 are ~2x slower.
            kq = (a @ bt).clamp_(min=-126.0).exp2_()
            torch.addmm(mean, kq, alpha, out=out[start : start + chunk])
        return out


def _nll_and_grad(
    sq_dist: torch.Tensor,
    ys: torch.Tensor,
    noise_scale: torch.Tensor,
    ls: float,
    s: float,
    s2: float,
    jitter: float,
) -> tuple[torch.Tensor, tuple[float, float, float]]:
    """-log N(ys | 0, K) / (k m) with K = s E + s2 diag(noise_scale) + jitter I,
    E = exp(-D / 2 ls^2), and its derivatives in (ls, s, s2) from dNLL/dK = G (see
    :class:`_GaussianNLL`): dG/ds = <G, E>, d/ds2 = <diag G, noise_scale>,
    d/dls = s <G, E * D> / ls^3."""
    n, m = ys.shape
    e = torch.exp(sq_dist * (-0.5 / ls**2))
    kmat = s * e
    kmat.diagonal().add_(s2 * noise_scale + jitter)
    chol = _cholesky(kmat)
    alpha = torch.cholesky_solve(ys, chol)
    logdet = 2.0 * chol.diagonal().log().sum()
    loss = (0.5 * (ys * alpha).sum() + 0.5 * m * logdet + 0.5 * n * m * math.log(2 * math.pi)) / (
        n * m
    )
    g = torch.cholesky_inverse(chol).mul_(m).sub_(alpha @ alpha.T)
    ge = g.mul_(e).div_(2.0 * n * m)  # dNLL/dK * E; E_ii = 1 keeps the diagonal of dNLL/dK
    d_s = float(ge.sum())
    d_s2 = float((ge.diagonal() * noise_scale).sum())
    d_ls = s * float((ge * sq_dist).sum()) / ls**3
    return loss, (d_ls, d_s, d_s2)


class _GaussianNLL(torch.autograd.Function):
    """Mean negative log density of the columns of y under N(0, K), with the closed-form
    gradient dNLL/dK = (m K^-1 - A A^T) / (2 n m), A = K^-1 y (Rasmussen & Williams eq. 5.9).

    Autograd through the Cholesky factor costs ~7x the factorisation at n = 2000; this costs
    one ``cholesky_inverse`` (it matters for the GPE and full-GP baselines, n in the thousands).
    """

    @staticmethod
    def forward(ctx, k: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        n, m = y.shape
        chol = _cholesky(k)
        alpha = torch.cholesky_solve(y, chol)
        ctx.save_for_backward(chol, alpha)
        quad = (y * alpha).sum()
        logdet = 2.0 * chol.diagonal().log().sum()
        return (0.5 * quad + 0.5 * m * logdet + 0.5 * n * m * math.log(2 * math.pi)) / (n * m)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        chol, alpha = ctx.saved_tensors
        n, m = alpha.shape
        dk = (m * torch.cholesky_inverse(chol) - alpha @ alpha.T) / (2.0 * n * m)
        return grad * dk, None


def _cholesky(k: torch.Tensor) -> torch.Tensor:
    """Cholesky with growing jitter (scaled by the mean diagonal) for near-singular K."""
    scale = float(k.diagonal().mean().detach())
    eye = torch.eye(len(k), dtype=k.dtype)
    for jitter in _JITTERS:
        chol, info = torch.linalg.cholesky_ex(k + jitter * scale * eye)
        if int(info) == 0:
            return chol
    raise RuntimeError(
        "GP covariance is not positive definite even with jitter 1e-2; the training patches "
        "are degenerate (e.g. a constant image)"
    )
