"""DNN baseline and Deep GMM (DGMM, shallow GMM, Deep Subspace GMM) frame classifiers."""

from __future__ import annotations

from torch import Tensor, nn

from core.checks import ConfigError, check_choice, check_positive, check_range

from .gmm_layer import GMMLayer
from .gmm_stages import KERNEL_CHOICES
from .prior import OnlineLogPrior
from .subspace_gmm_layer import SUBSPACE_SHARING, SubspaceGMMLayer

__all__ = ["HiddenLayer", "HiddenStack", "DNN", "DeepGMM"]


class HiddenLayer(nn.Module):
    """Linear + ReLU, the paper's hidden unit."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, out_features)
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.fc(x))


class HiddenStack(nn.Sequential):
    """``depth`` ReLU layers of ``width`` units; keys ``{i}.fc.*`` are what DNN-init copies across."""

    def __init__(self, in_features: int, width: int, depth: int) -> None:
        if depth < 0 or (depth > 0 and width < 1):
            raise ValueError(
                f"HiddenStack: need depth >= 0 and width >= 1, got depth={depth} width={width}"
            )
        dims = [in_features] + [width] * depth
        super().__init__(*[HiddenLayer(a, b) for a, b in zip(dims[:-1], dims[1:])])
        self.out_features = dims[-1]


def _check_sizes(in_features: int, num_states: int, width: int, depth: int) -> None:
    """Config errors naming the ``model.*`` key, raised before any layer is built."""
    check_positive("model.in_features", in_features, integer=True)
    if not isinstance(num_states, int) or num_states < 2:
        raise ConfigError("model.num_states", f"got {num_states!r}; expected an integer >= 2")
    if not isinstance(depth, int) or depth < 0:
        raise ConfigError("model.depth", f"got {depth!r}; expected an integer >= 0")
    if depth > 0:
        check_positive("model.width", width, integer=True)


def _check_gmm(
    gmm_dim: int,
    gmm_components: int,
    var_floor: float | None,
    subspace: str | None,
    subspace_dim: int,
    gmm_kernels: str,
) -> None:
    """GMM(d, g) needs d >= 1 and g >= 1; a zero would only fail deep inside the layer."""
    check_positive("model.gmm_dim", gmm_dim, integer=True)
    check_positive("model.gmm_components", gmm_components, integer=True)
    if var_floor is not None:
        check_range("model.var_floor", var_floor, 0)
    if subspace is not None:
        check_choice("model.subspace", subspace, [None, *SUBSPACE_SHARING])
        check_positive("model.subspace_dim", subspace_dim, integer=True)
    check_choice("model.gmm_kernels", gmm_kernels, KERNEL_CHOICES)


class DNN(nn.Module):
    """Hidden ReLU stack + softmax output layer; returns state logits."""

    def __init__(
        self, in_features: int = 1040, num_states: int = 2432, width: int = 2560, depth: int = 8
    ) -> None:
        super().__init__()
        _check_sizes(in_features, num_states, width, depth)
        self.num_states = num_states
        self.hidden = HiddenStack(in_features, width, depth)
        self.output = nn.Linear(self.hidden.out_features, num_states)

    def forward(self, x: Tensor) -> Tensor:
        return self.output(self.hidden(x))


class DeepGMM(nn.Module):
    """Hidden stack + GMM layer (+ online prior); ``depth=0`` is the shallow GMM.

    ``forward`` returns log p(s) - L(x, s) = log p(x, s), whose softmax over s is the state posterior
    of Eq. 5, so the usual frame cross-entropy on it is the paper's CE criterion.
    ``subspace`` in {None, "mean", "mean_weight", "all"} selects the Deep Subspace GMM head.
    ``gmm_kernels`` picks the GMM layer's element-wise stages (``auto`` | ``eager`` | ``cpp``).
    """

    def __init__(
        self,
        in_features: int = 1040,
        num_states: int = 2432,
        width: int = 2560,
        depth: int = 7,
        gmm_dim: int = 272,
        gmm_components: int = 5,
        var_floor: float | None = 1e-3,
        subspace: str | None = None,
        subspace_dim: int = 80,
        bottleneck: bool = True,
        gmm_kernels: str = "auto",
    ) -> None:
        super().__init__()
        _check_sizes(in_features, num_states, width, depth)
        _check_gmm(gmm_dim, gmm_components, var_floor, subspace, subspace_dim, gmm_kernels)
        self.num_states = num_states
        self.hidden = HiddenStack(in_features, width, depth)
        h = self.hidden.out_features
        if subspace is None:
            self.gmm = GMMLayer(
                h, num_states, gmm_dim, gmm_components, var_floor, bottleneck, gmm_kernels
            )
        else:
            self.gmm = SubspaceGMMLayer(
                h,
                num_states,
                gmm_dim,
                gmm_components,
                subspace_dim,
                subspace,
                var_floor,
                bottleneck,
                gmm_kernels,
            )
        self.prior = OnlineLogPrior(num_states)

    def neg_log_likelihood(self, x: Tensor) -> Tensor:
        """L(x, s) = -log p(x|s), (batch, num_states)."""
        return self.gmm(self.hidden(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.prior() - self.neg_log_likelihood(x)

    def prior_loss(self, targets: Tensor) -> Tensor:
        return self.prior.loss(targets)

    def variance_parameters(self) -> list[nn.Parameter]:
        return self.gmm.variance_parameters()
