"""Key mapping from the official MAE layout (facebookresearch/mae ``models_mae.py`` /
``models_vit.py`` checkpoints) to this package's modules, so published weights load.

Official pre-training keys: ``cls_token``, ``pos_embed`` (1, 1+N, D; fixed sin-cos with a zero
cls row), ``patch_embed.*``, ``blocks.i.*``, ``norm.*``, ``mask_token``, ``decoder_embed.*``,
``decoder_pos_embed``, ``decoder_blocks.i.*``, ``decoder_norm.*``, ``decoder_pred.*``. The
global-pool fine-tune layout has ``fc_norm.*`` and ``head.*`` instead of ``norm.*``.

Our encoder has no cls token: the official ``cls_token`` is dropped and the mapping says so
(the returned ``notes``), since MAE's encoder attends to it and features differ slightly. The
fixed position tables are not loaded but *compared* with ours: a checkpoint whose table is not
MAE's sin-cos (e.g. a learned one) is refused rather than loaded with wrong positions.
"""

from __future__ import annotations

import torch

from models.sd_mae.pos_embed import sincos_2d

# heads are not recoverable from the weights; MAE's ViTs use 64-wide heads (ViT-H: 80)
HEADS_BY_WIDTH = {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16}


class LayoutError(ValueError):
    """The state dict is MAE-layout but cannot be mapped (message names the key)."""


def unwrap(ckpt: object) -> dict | None:
    """The official state dict inside a checkpoint (``{"model": sd, ...}`` or bare), else None."""
    if not isinstance(ckpt, dict):
        return None
    sd = ckpt.get("model", ckpt)
    if isinstance(sd, dict) and "patch_embed.proj.weight" in sd:
        return sd
    return None


def infer_arch(sd: dict[str, torch.Tensor]) -> dict:
    """Encoder architecture from the official weights' shapes (heads from the width table)."""
    w = sd["patch_embed.proj.weight"]
    dim, chans, patch = w.shape[0], w.shape[1], w.shape[2]
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    n_pos = sd["pos_embed"].shape[1] - ("cls_token" in sd)
    grid = round(n_pos**0.5)
    return {
        "img_size": grid * patch,
        "patch_size": patch,
        "in_chans": chans,
        "embed_dim": dim,
        "depth": depth,
        "num_heads": HEADS_BY_WIDTH.get(dim),
        "mlp_ratio": sd["blocks.0.mlp.fc1.weight"].shape[0] / dim,
    }


def _check_table(key: str, table: torch.Tensor, has_cls: bool) -> None:
    grid_rows = table[0, 1:] if has_cls else table[0]
    dim, grid = grid_rows.shape[1], round(grid_rows.shape[0] ** 0.5)
    ours = sincos_2d(dim, grid)
    err = (grid_rows.float() - ours).abs().max().item()
    if err > 1e-4:
        raise LayoutError(
            f"{key} is not MAE's fixed 2-D sin-cos table (max difference {err:.3g}); this "
            "encoder uses the fixed table, so a learned or reordered one cannot be loaded"
        )


def encoder_state(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """ViTEncoder state dict + notes on what was dropped (cls token, fine-tune head)."""
    if "norm.weight" not in sd:
        raise LayoutError(
            "no 'norm.weight': a global-pool fine-tune checkpoint (fc_norm/head) - load it "
            "into the classifier (classifier_state), not as a pre-trained encoder"
        )
    has_cls = "cls_token" in sd
    _check_table("pos_embed", sd["pos_embed"], has_cls)
    out = {k: v for k, v in sd.items() if k.startswith(("patch_embed.", "blocks.", "norm."))}
    notes = ["cls_token dropped (this encoder has no cls token)"] if has_cls else []
    return out, notes


def mae_state(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """MaskedAutoencoder state dict (encoder + decoder) from an official pre-training file."""
    enc, notes = encoder_state(sd)
    if "decoder_pos_embed" not in sd:
        raise LayoutError("no 'decoder_pos_embed': not a pre-training (models_mae) checkpoint")
    _check_table("decoder_pos_embed", sd["decoder_pos_embed"], "cls_token" in sd)
    rename = {
        "decoder_embed.": "decoder.embed.",
        "decoder_blocks.": "decoder.blocks.",
        "decoder_norm.": "decoder.norm.",
        "decoder_pred.": "decoder.pred.",
    }
    out = {f"encoder.{k}": v for k, v in enc.items()}
    out["decoder.mask_token"] = sd["mask_token"]
    for k, v in sd.items():
        for old, new in rename.items():
            if k.startswith(old):
                out[new + k[len(old) :]] = v
    return out, notes


def classifier_state(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """ViTClassifier state dict from an official global-pool fine-tune checkpoint."""
    if "fc_norm.weight" not in sd:
        raise LayoutError("no 'fc_norm.weight': not a global-pool fine-tune checkpoint")
    has_cls = "cls_token" in sd
    _check_table("pos_embed", sd["pos_embed"], has_cls)
    out = {f"encoder.{k}": v for k, v in sd.items() if k.startswith(("patch_embed.", "blocks."))}
    out.update({k: v for k, v in sd.items() if k.startswith(("fc_norm.", "head."))})
    notes = ["cls_token dropped (this encoder has no cls token)"] if has_cls else []
    return out, notes
