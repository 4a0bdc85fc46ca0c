"""Deep GMM (Variani, McDermott, Heigold, ICASSP 2015): a GMM layer trained inside a DNN."""

from .gmm_function import GMMNegLogLikelihood, gmm_nll, naive_gmm_nll
from .gmm_layer import GMMLayer
from .networks import DNN, DeepGMM, HiddenStack
from .prior import OnlineLogPrior
from .subspace_gmm_layer import SUBSPACE_SHARING, SubspaceGMMLayer

__all__ = [
    "DNN",
    "DeepGMM",
    "GMMLayer",
    "GMMNegLogLikelihood",
    "HiddenStack",
    "OnlineLogPrior",
    "SUBSPACE_SHARING",
    "SubspaceGMMLayer",
    "gmm_nll",
    "naive_gmm_nll",
]
