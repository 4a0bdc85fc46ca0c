"""Light MAE decoder: mask tokens fill the holes, then a narrow transformer predicts pixels."""

from __future__ import annotations

from functools import partial

import torch
from timm.models.vision_transformer import Block
from torch import nn

from models.sd_mae.encoder import _init_weights
from models.sd_mae.pos_embed import sincos_2d


class MAEDecoder(nn.Module):
    """Linear ``enc_dim -> dim``, mask tokens, fixed positions, ``depth`` blocks, pixel head.

    Returns the decoder tokens before the pixel head as well, because SD-MAE uses the visible
    ones (y_vis) as the self-distillation teacher.
    """

    def __init__(
        self,
        num_patches: int,
        patch_size: int,
        in_chans: int = 3,
        enc_dim: int = 384,
        dim: int = 192,
        depth: int = 4,
        num_heads: int = 3,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        grid = int(round(num_patches**0.5))
        self.embed = nn.Linear(enc_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer("pos_embed", sincos_2d(dim, grid)[None], persistent=False)
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList(
            Block(dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm) for _ in range(depth)
        )
        self.norm = norm(dim)
        self.pred = nn.Linear(dim, patch_size**2 * in_chans)
        self.apply(_init_weights)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(
        self, latent: torch.Tensor, ids_restore: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``latent`` (B, N_vis, enc_dim) in kept order -> (pixels (B, N, p*p*C), tokens (B, N, dim)).

        Tokens come back in the original patch order.
        """
        x = self.embed(latent)
        b, n_vis, d = x.shape
        n = ids_restore.shape[1]
        masks = self.mask_token.expand(b, n - n_vis, d)
        x = torch.cat([x, masks], dim=1)
        x = torch.gather(x, 1, ids_restore.unsqueeze(-1).expand(-1, -1, d))
        x = x + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        return self.pred(x), x
