"""frailty: the LightningModules and pipelines of this paper."""
