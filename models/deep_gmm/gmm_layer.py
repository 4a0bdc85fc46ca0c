"""The GMM layer of the paper: linear bottleneck -> one diagonal GMM per state -> -log p(x|s)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .gmm_function import gmm_nll
from .gmm_stages import KERNEL_CHOICES

__all__ = ["GMMLayer"]


class GMMLayer(nn.Module):
    """GMM(d, g): ``in_features -> Linear -> x (d) -> L(x, s) = -log sum_i w_si N(x; mu_si, Sigma_si)``.

    Stored parameters are the paper's mu' (S, g, d), Sigma' (S, g, d) and omega' (S, g), mapped to
    mu = mu', Sigma = exp(Sigma') (floored at ``var_floor``) and omega = softmax_g(omega').
    ``bottleneck=False`` feeds the input straight in (the PLP+LDA front end of Table 2); then
    ``in_features`` must equal ``dim``. ``kernels`` picks the element-wise stages of the fused
    likelihood: ``auto`` (C++ on CPU at paper size), ``eager`` or ``cpp`` (``gmm_stages``).
    """

    def __init__(
        self,
        in_features: int,
        num_states: int,
        dim: int = 272,
        components: int = 5,
        var_floor: float | None = 1e-3,
        bottleneck: bool = True,
        kernels: str = "auto",
    ) -> None:
        super().__init__()
        for key, val in (
            ("in_features", in_features),
            ("num_states", num_states),
            ("dim", dim),
            ("components", components),
        ):
            if int(val) < 1:
                raise ValueError(f"GMMLayer: {key} must be >= 1, got {val}")
        if var_floor is not None and var_floor < 0:
            raise ValueError(f"GMMLayer: var_floor must be >= 0 or None, got {var_floor}")
        if not bottleneck and in_features != dim:
            raise ValueError(
                f"GMMLayer: without a bottleneck in_features ({in_features}) must equal dim ({dim})"
            )
        if kernels not in KERNEL_CHOICES:
            raise ValueError(f"GMMLayer: kernels must be one of {KERNEL_CHOICES}, got {kernels!r}")
        self.num_states, self.dim, self.components = num_states, dim, components
        self.kernels = kernels
        self.var_floor = var_floor
        self.bottleneck = nn.Linear(in_features, dim) if bottleneck else nn.Identity()
        self.mu = nn.Parameter(torch.empty(num_states, components, dim))
        self.log_var = nn.Parameter(torch.empty(num_states, components, dim))
        self.weight_logits = nn.Parameter(torch.empty(num_states, components))
        self.reset_gmm_parameters()

    @torch.no_grad()
    def reset_gmm_parameters(self) -> None:
        """The paper's init: mu' ~ N(0, 1), Sigma' = 0 (variance 1), omega' = 1/g (uniform weights)."""
        if self.mu.is_meta:
            return
        self.mu.normal_(0.0, 1.0)
        self.log_var.zero_()
        self.weight_logits.fill_(1.0 / self.components)

    def gmm_parameters(self) -> tuple[Tensor, Tensor, Tensor]:
        """(mu, log_var) as (S*g, d) and weight logits (S, g) in the stored (pre-activation) space."""
        return self.mu.view(-1, self.dim), self.log_var.view(-1, self.dim), self.weight_logits

    def variance_parameters(self) -> list[nn.Parameter]:
        """Parameters that only shape the variances (frozen in the staged regime's first stage)."""
        return [self.log_var]

    def features(self, h: Tensor) -> Tensor:
        return self.bottleneck(h)

    def forward(self, h: Tensor) -> Tensor:
        """Return L(x, s) = -log p(x|s), shape (batch, num_states)."""
        mu, log_var, w = self.gmm_parameters()
        return gmm_nll(self.features(h), mu, log_var, w, self.var_floor, kernels=self.kernels)

    def extra_repr(self) -> str:
        return f"GMM(d={self.dim}, g={self.components}), states={self.num_states}, var_floor={self.var_floor}"
