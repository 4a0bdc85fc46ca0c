"""The runner: task wrapper, builders, sweep report (see docs/conventions.md).

Importing it registers the OmegaConf resolvers the configs use (``${run_dir_or:}``,
``${launch_dir:}``). Only the runner does this: models, losses, datamodules and ``core`` import
without side effects.
"""

from experiments.runner.resolvers import register_resolvers

register_resolvers()
