"""example: the LightningModules and pipelines of this paper."""
