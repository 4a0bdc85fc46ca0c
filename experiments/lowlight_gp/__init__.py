"""lowlight_gp: the LightningModules and pipelines of this paper."""
