"""ViT encoder over (optionally) a subset of patches, built from timm's blocks.

One class serves MAE pre-training (visible patches only), the linear probe and the fine-tuned
classifier, so an encoder state dict moves between them without renaming keys.
"""

from __future__ import annotations

from functools import partial

import torch
from timm.layers import PatchEmbed
from timm.models.vision_transformer import Block
from torch import nn

from models.sd_mae.pos_embed import sincos_2d


class ViTEncoder(nn.Module):
    """Patch embedding + fixed sin-cos positions + ``depth`` transformer blocks + LayerNorm.

    No cls token: features are mean-pooled tokens (the paper's probe protocol), which also
    keeps the token count equal to the number of visible patches.
    """

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if img_size % patch_size:
            raise ValueError(
                f"img_size {img_size} must be a multiple of patch_size {patch_size} "
                "(e.g. 224/16, 96/16, 64/8)"
            )
        self.arch = {
            "img_size": img_size,
            "patch_size": patch_size,
            "in_chans": in_chans,
            "embed_dim": embed_dim,
            "depth": depth,
            "num_heads": num_heads,
            "mlp_ratio": mlp_ratio,
        }
        self.embed_dim = embed_dim
        self.depth = depth
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        num_patches = self.patch_embed.num_patches
        self.register_buffer(
            "pos_embed", sincos_2d(embed_dim, img_size // patch_size)[None], persistent=False
        )
        norm = partial(nn.LayerNorm, eps=1e-6)
        dpr = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, drop_path=dpr[i], norm_layer=norm)
            for i in range(depth)
        )
        self.norm = norm(embed_dim)
        self.num_patches = num_patches
        self.apply(_init_weights)
        # MAE initialises the patch projection like a linear layer, not a conv.
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))

    def forward(self, x: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """Encode images ``x`` (B, C, H, W); keep only patches ``ids_keep`` (B, N_vis) if given."""
        tokens = self.patch_embed(x) + self.pos_embed
        if ids_keep is not None:
            idx = ids_keep.unsqueeze(-1).expand(-1, -1, tokens.shape[-1])
            tokens = torch.gather(tokens, 1, idx)
        for blk in self.blocks:
            tokens = blk(tokens)
        return self.norm(tokens)


def _init_weights(m: nn.Module) -> None:
    """MAE/timm initialisation: xavier linear layers, unit LayerNorm."""
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
