"""Print the composed config as a rich tree at the start of a run."""

from __future__ import annotations

import rich
import rich.syntax
import rich.tree
from omegaconf import DictConfig, OmegaConf

ORDER = ("experiment", "datamodule", "model", "loss", "module", "pipeline", "trainer")


def print_config_tree(cfg: DictConfig) -> None:
    """One branch per top-level group, most important first; unresolvable values shown raw."""
    tree = rich.tree.Tree("CONFIG", style="dim", guide_style="dim")
    keys = [k for k in ORDER if k in cfg] + [k for k in cfg if k not in ORDER and k != "hydra"]
    for key in keys:
        branch = tree.add(str(key), style="bold")
        node = cfg[key]
        try:
            text = (
                OmegaConf.to_yaml(node, resolve=True)
                if isinstance(node, DictConfig)
                else str(OmegaConf.select(cfg, str(key)))
            )
        except Exception:
            text = OmegaConf.to_yaml(node) if isinstance(node, DictConfig) else str(node)
        branch.add(rich.syntax.Syntax(text, "yaml"))
    rich.print(tree)
