"""ViT classifier for fine-tuning and the supervised baseline: same encoder, mean-pooled."""

from __future__ import annotations

import torch
from torch import nn

from models.sd_mae.encoder import ViTEncoder


class ViTClassifier(nn.Module):
    """``ViTEncoder`` blocks -> mean over tokens -> ``fc_norm`` -> linear.

    MAE's global-pool fine-tune head: the encoder's own final LayerNorm is removed (replaced by
    an identity, its pre-trained weights are not loaded) and ``fc_norm`` normalises the pooled
    vector, so LayerNorm is applied once, not twice.
    """

    def __init__(
        self,
        num_classes: int,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.1,
    ) -> None:
        super().__init__()
        self.encoder = ViTEncoder(
            img_size, patch_size, in_chans, embed_dim, depth, num_heads, mlp_ratio, drop_path_rate
        )
        self.encoder.norm = nn.Identity()  # global pool: fc_norm replaces it
        self.fc_norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Linear(embed_dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=2e-5)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> logits (B, num_classes)."""
        return self.head(self.fc_norm(self.encoder(x).mean(dim=1)))

    def group_matcher(self, coarse: bool = False) -> dict:
        """timm's layer grouping (used by its layer-decay optimiser factory): patch embedding
        = layer 0, block i = layer i + 1, fc_norm and head = the last layer (as MAE's
        ``get_layer_id_for_vit``)."""
        return {
            "stem": r"^encoder\.patch_embed",
            "blocks": r"^encoder\.blocks\.(\d+)",
            "head": r"^fc_norm|^head",
        }

    def no_weight_decay(self) -> set[str]:
        """Nothing beyond timm's rule (no decay on 1-D tensors); positions are a buffer."""
        return set()

    def layer_id(self, name: str) -> int:
        """Depth index for layer-wise lr decay: embeddings 0, block i -> i + 1, heads last."""
        if name.startswith("encoder.patch_embed"):
            return 0
        if name.startswith("encoder.blocks."):
            return int(name.split(".")[2]) + 1
        return self.encoder.depth + 1
