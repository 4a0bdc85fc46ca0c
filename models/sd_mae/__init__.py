"""SD-MAE (Luo et al.): MAE with self-distillation on visible tokens, plus ViT classifier."""

from models.sd_mae.classifier import ViTClassifier
from models.sd_mae.encoder import ViTEncoder
from models.sd_mae.head import DINOHead
from models.sd_mae.mae import MAEOutput, MaskedAutoencoder

__all__ = ["DINOHead", "MAEOutput", "MaskedAutoencoder", "ViTClassifier", "ViTEncoder"]
