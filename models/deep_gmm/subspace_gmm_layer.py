"""Deep Subspace GMM head: per-state vectors v_s mapped by state-tied transforms to GMM parameters."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .gmm_layer import GMMLayer

__all__ = ["SubspaceGMMLayer", "SUBSPACE_SHARING"]

# Which GMM parameters are produced from the shared subspace (the rest keep their own layers).
SUBSPACE_SHARING: dict[str, tuple[str, ...]] = {
    "mean": ("mean",),
    "mean_weight": ("mean", "weight"),
    "all": ("mean", "weight", "variance"),
}


class SubspaceGMMLayer(GMMLayer):
    """GMM(d, g) whose means (and optionally weights, variances) come from a shared subspace.

    mu_s = M v_s, omega'_s = W v_s, Sigma'_s = S v_s with M, W, S tied across states (Povey et
    al.'s SGMM inside the DGMM, Section 4 / Fig. 3). ``sharing`` picks which of the three use it.
    """

    def __init__(
        self,
        in_features: int,
        num_states: int,
        dim: int = 80,
        components: int = 5,
        subspace_dim: int = 80,
        sharing: str = "mean",
        var_floor: float | None = 1e-3,
        bottleneck: bool = True,
        kernels: str = "auto",
    ) -> None:
        if sharing not in SUBSPACE_SHARING:
            raise ValueError(
                f"SubspaceGMMLayer: sharing must be one of {sorted(SUBSPACE_SHARING)}, got {sharing!r}"
            )
        if subspace_dim < 1:
            raise ValueError(f"SubspaceGMMLayer: subspace_dim must be >= 1, got {subspace_dim}")
        self.sharing = sharing
        self.subspace_dim = subspace_dim
        super().__init__(in_features, num_states, dim, components, var_floor, bottleneck, kernels)
        shared = SUBSPACE_SHARING[sharing]
        gd = components * dim
        self.v = nn.Parameter(torch.empty(num_states, subspace_dim))
        # Replace the per-state parameters that come from the subspace by tied transforms.
        self.mu_proj = nn.Linear(subspace_dim, gd, bias=False)
        del self.mu
        self.mu = None
        if "weight" in shared:
            del self.weight_logits
            self.weight_logits = None
            self.weight_proj = nn.Linear(subspace_dim, components, bias=False)
        if "variance" in shared:
            del self.log_var
            self.log_var = None
            self.var_proj = nn.Linear(subspace_dim, gd, bias=False)
        self.reset_gmm_parameters()

    @torch.no_grad()
    def reset_gmm_parameters(self) -> None:
        """Match the paper's init in parameter space: mu ~ N(0, 1), variance 1, uniform weights."""
        if not hasattr(self, "v"):  # called by GMMLayer.__init__ before the subspace exists
            return super().reset_gmm_parameters()
        if self.v.is_meta:
            return
        self.v.normal_(0.0, 1.0)
        self.mu_proj.weight.normal_(0.0, 1.0 / math.sqrt(self.subspace_dim))
        if self.weight_logits is None:
            self.weight_proj.weight.zero_()
        else:
            self.weight_logits.fill_(1.0 / self.components)
        if self.log_var is None:
            self.var_proj.weight.zero_()
        else:
            self.log_var.zero_()

    def gmm_parameters(self) -> tuple[Tensor, Tensor, Tensor]:
        mu = self.mu_proj(self.v).view(-1, self.dim)
        w = self.weight_logits if self.weight_logits is not None else self.weight_proj(self.v)
        lv = (
            self.log_var.view(-1, self.dim)
            if self.log_var is not None
            else self.var_proj(self.v).view(-1, self.dim)
        )
        return mu, lv, w

    def variance_parameters(self) -> list[nn.Parameter]:
        return [self.log_var] if self.log_var is not None else [self.var_proj.weight]

    def extra_repr(self) -> str:
        return super().extra_repr() + f", subspace={self.subspace_dim}, sharing={self.sharing}"
