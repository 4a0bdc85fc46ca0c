"""The runner's wandb logger: the run's resolved config, as plain values, is its only config."""

from __future__ import annotations

from argparse import Namespace
from typing import Any

from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger


class WandbLogger(LightningWandbLogger):
    """Lightning's ``WandbLogger`` that leaves the run config to the runner.

    The runner passes the whole resolved config (``config=``, plain values) when the run starts,
    so a dashboard can group and filter runs by any key (``loss.gamma``, ``seed``). Lightning
    would add the module's ``hparams`` on top: the objects it was built from (the network, a
    ``functools.partial`` optimizer) as reprs. Those keys are already in the config as values,
    so they are not logged a second time.
    """

    def log_hyperparams(self, params: dict[str, Any] | Namespace) -> None:
        """Deliberately nothing: the config given at start holds these values already."""
