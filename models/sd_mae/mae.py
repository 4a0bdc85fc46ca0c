"""Masked autoencoder (He et al.) with the hooks SD-MAE needs (encoder/decoder visible tokens)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.sd_mae.decoder import MAEDecoder
from models.sd_mae.encoder import ViTEncoder
from models.sd_mae.masking import random_masking
from models.sd_mae.patchify import normalised_target, patchify


@dataclass
class MAEOutput:
    """Everything a pre-training loss can need from one forward pass."""

    pred: torch.Tensor  # (B, N, p*p*C) predicted pixels for every patch
    target: torch.Tensor  # (B, N, p*p*C) (normalised) pixel target
    mask: torch.Tensor  # (B, N) 1 = masked
    enc_vis: torch.Tensor  # (B, N_vis, enc_dim) encoder output z'_vis (student)
    dec_vis: torch.Tensor  # (B, N_vis, dec_dim) decoder output of the same patches y_vis (teacher)
    ids_keep: torch.Tensor  # (B, N_vis)


class MaskedAutoencoder(nn.Module):
    """ViT encoder over visible patches + light decoder; defaults are the paper's ViT-S/16."""

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        decoder_dim: int = 192,
        decoder_depth: int = 4,
        decoder_heads: int = 3,
        mlp_ratio: float = 4.0,
        mask_ratio: float = 0.6,
        norm_pix_loss: bool = True,
    ) -> None:
        super().__init__()
        # constructor arguments, so a saved model can be rebuilt without the config files
        self.config = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        # mask_ratio is validated where it is used (random_masking) and, as a config error, by
        # the pre-training module, so a bad value is reported with its config key.
        self.encoder = ViTEncoder(
            img_size, patch_size, in_chans, embed_dim, depth, num_heads, mlp_ratio
        )
        self.decoder = MAEDecoder(
            self.encoder.num_patches,
            patch_size,
            in_chans,
            embed_dim,
            decoder_dim,
            decoder_depth,
            decoder_heads,
            mlp_ratio,
        )
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.mask_ratio = mask_ratio
        self.norm_pix_loss = norm_pix_loss
        self.embed_dim = embed_dim
        self.decoder_dim = decoder_dim

    def forward(self, imgs: torch.Tensor, mask_ratio: float | None = None) -> MAEOutput:
        """Mask, encode visible patches, decode all; ``mask_ratio`` overrides the default."""
        ratio = self.mask_ratio if mask_ratio is None else mask_ratio
        b = imgs.shape[0]
        ids_keep, ids_restore, mask = random_masking(
            b, self.encoder.num_patches, ratio, imgs.device
        )
        latent = self.encoder(imgs, ids_keep)
        pred, dec_tokens = self.decoder(latent, ids_restore)
        dec_vis = torch.gather(
            dec_tokens, 1, ids_keep.unsqueeze(-1).expand(-1, -1, dec_tokens.shape[-1])
        )
        target = patchify(imgs, self.patch_size)
        if self.norm_pix_loss:
            target = normalised_target(target)
        return MAEOutput(pred, target, mask, latent, dec_vis, ids_keep)
