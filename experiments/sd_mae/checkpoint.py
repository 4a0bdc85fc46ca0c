"""Encoder checkpoints passed between pre-training, probing and fine-tuning, with an
architecture check so a probe never silently loads weights of another ViT."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.checks import ConfigError, check_file
from models.sd_mae import mae_layout

log = logging.getLogger(__name__)

ARCH_KEYS = ("img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads", "mlp_ratio")


def save_encoder(path: str | Path, encoder: nn.Module, **meta: Any) -> Path:
    """``{"arch", "state_dict", **meta}``: small, framework-free, loadable by any stage."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"arch": dict(encoder.arch), "state_dict": encoder.state_dict(), **meta}, path)
    return path


def read_encoder(path: str | Path, key: str = "module.encoder_ckpt") -> tuple[dict, dict]:
    """(arch, encoder state dict) from an ``encoder.pt``, a pre-training Lightning ``.ckpt`` or
    an official MAE pre-training checkpoint (``{"model": state_dict}``, keys mapped)."""
    p = check_file(key, path, "encoder checkpoint")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as err:
        raise ConfigError(key, f"cannot read checkpoint {str(p)!r}: {err}") from err
    if isinstance(ckpt, dict) and "arch" in ckpt and "state_dict" in ckpt:
        return ckpt["arch"], ckpt["state_dict"]
    if isinstance(ckpt, dict) and "state_dict" in ckpt and "encoder_arch" in ckpt:
        prefix = "net.encoder."
        sd = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
        return ckpt["encoder_arch"], sd
    official = mae_layout.unwrap(ckpt)
    if official is not None:
        try:
            sd, notes = mae_layout.encoder_state(official)
        except mae_layout.LayoutError as err:
            raise ConfigError(key, f"{str(p)!r}: {err}") from err
        for note in notes:
            log.warning("%s (official MAE layout): %s", p, note)
        return mae_layout.infer_arch(official), sd
    raise ConfigError(
        key,
        f"{str(p)!r} is not an SD-MAE encoder checkpoint (expected encoder.pt written by the "
        "pre-training stage, or its Lightning .ckpt)",
    )


def check_arch(arch: dict, encoder: nn.Module, key: str = "module.encoder_ckpt") -> None:
    """Fail with the differing fields when the checkpoint's ViT is not the configured one."""
    want = encoder.arch
    # None = not recoverable from the file (heads of an official checkpoint of unknown width)
    diff = {
        k: (arch.get(k), want.get(k))
        for k in ARCH_KEYS
        if arch.get(k) is not None and arch.get(k) != want.get(k)
    }
    if diff:
        text = ", ".join(f"{k}: checkpoint {a} vs model {b}" for k, (a, b) in diff.items())
        raise ConfigError(
            key,
            f"checkpoint architecture differs from the configured model ({text}); set the model "
            "keys to the checkpoint's values or point at a checkpoint of this architecture",
        )


def load_encoder(path: str | Path, encoder: nn.Module, key: str = "module.encoder_ckpt") -> None:
    """Check the architecture, then load strictly (every key must match).

    An encoder whose final norm was removed (the classifier's global-pool head) does not take
    the pre-trained ``norm.*`` weights, as in MAE's fine-tuning; that is logged.
    """
    arch, sd = read_encoder(path, key)
    check_arch(arch, encoder, key)
    if isinstance(getattr(encoder, "norm", None), nn.Identity):
        dropped = [k for k in sd if k.startswith("norm.")]
        sd = {k: v for k, v in sd.items() if not k.startswith("norm.")}
        if dropped:
            log.info("encoder norm %s not loaded: the global-pool head uses fc_norm", dropped)
    encoder.load_state_dict(sd, strict=True)
