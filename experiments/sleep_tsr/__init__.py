"""sleep_tsr: the LightningModules and pipelines of this paper."""
