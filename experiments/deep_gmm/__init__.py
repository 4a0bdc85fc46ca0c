"""deep_gmm: the LightningModules and pipelines of this paper."""
