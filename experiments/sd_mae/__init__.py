"""sd_mae: the LightningModules and pipelines of this paper."""
