"""Official MAE weights: the sin-cos table is MAE's, and MAE-layout state dicts load."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.checks import ConfigError
from experiments.sd_mae.checkpoint import load_encoder
from models.sd_mae import mae_layout
from models.sd_mae.classifier import ViTClassifier
from models.sd_mae.encoder import ViTEncoder
from models.sd_mae.mae import MaskedAutoencoder
from models.sd_mae.pos_embed import sincos_2d

ARCH = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)


def official_table(dim: int, grid: int, cls: bool = True) -> np.ndarray:
    """MAE's util/pos_embed.py recipe, written out: meshgrid(w, h) so that the FIRST half of the
    width takes grid[0] = the column index w, the second half the row index h."""

    def one_d(d: int, pos: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = pos.reshape(-1)[:, None] * omega[None]
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    w, h = np.meshgrid(np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32))
    emb = np.concatenate([one_d(dim // 2, w), one_d(dim // 2, h)], axis=1)
    return np.concatenate([np.zeros((1, dim)), emb]) if cls else emb


def test_sincos_table_is_mae_table():
    ours = sincos_2d(32, 4).numpy()
    assert np.allclose(ours, official_table(32, 4, cls=False), atol=1e-6)
    # patch (row 1, col 2) = index 6: the first channel is sin(col), channel D/2 is sin(row)
    assert ours[6, 0] == pytest.approx(np.sin(2.0), abs=1e-6)
    assert ours[6, 16] == pytest.approx(np.sin(1.0), abs=1e-6)


def official_state(m: MaskedAutoencoder) -> dict[str, torch.Tensor]:
    """A state dict with facebookresearch/mae models_mae.py's key names and buffers."""
    ours = m.state_dict()
    g = m.encoder.num_patches
    grid = int(g**0.5)
    sd = {
        "cls_token": torch.randn(1, 1, 32),
        "pos_embed": torch.from_numpy(official_table(32, grid)).float()[None],
        "mask_token": ours["decoder.mask_token"],
        "decoder_pos_embed": torch.from_numpy(official_table(16, grid)).float()[None],
    }
    for k, v in ours.items():
        if k.startswith("encoder."):
            sd[k.removeprefix("encoder.")] = v
        for ourp, theirs in (
            ("decoder.embed.", "decoder_embed."),
            ("decoder.blocks.", "decoder_blocks."),
            ("decoder.norm.", "decoder_norm."),
            ("decoder.pred.", "decoder_pred."),
        ):
            if k.startswith(ourp):
                sd[theirs + k[len(ourp) :]] = v
    return sd


def test_official_pretrain_layout_loads_into_mae_and_encoder(tmp_path):
    torch.manual_seed(0)
    src = MaskedAutoencoder(**ARCH, decoder_dim=16, decoder_depth=1, decoder_heads=2)
    sd = official_state(src)
    dst = MaskedAutoencoder(**ARCH, decoder_dim=16, decoder_depth=1, decoder_heads=2)
    mapped, notes = mae_layout.mae_state(sd)
    dst.load_state_dict(mapped, strict=True)
    assert any("cls_token" in n for n in notes)
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(1)
    a = src(x)
    torch.manual_seed(1)
    b = dst(x)
    assert torch.equal(a.pred, b.pred)
    # the probe / fine-tune path: {"model": sd} written by MAE's save_model
    path = tmp_path / "mae_official.pth"
    torch.save({"model": sd, "epoch": 799}, path)
    enc = ViTEncoder(**ARCH)
    load_encoder(path, enc)
    assert torch.equal(enc(x), src.encoder(x))


def test_official_layout_with_another_table_or_arch_is_refused(tmp_path):
    src = MaskedAutoencoder(**ARCH, decoder_dim=16, decoder_depth=1, decoder_heads=2)
    sd = official_state(src)
    swapped = sd["pos_embed"].clone()
    swapped[0, 1:] = torch.cat([swapped[0, 1:, 16:], swapped[0, 1:, :16]], dim=1)
    path = tmp_path / "swapped.pth"
    torch.save({"model": {**sd, "pos_embed": swapped}}, path)
    with pytest.raises(ConfigError, match="sin-cos"):
        load_encoder(path, ViTEncoder(**ARCH))
    path = tmp_path / "ok.pth"
    torch.save({"model": sd}, path)
    with pytest.raises(ConfigError, match="depth"):
        load_encoder(path, ViTEncoder(**{**ARCH, "depth": 3}))


def test_classifier_applies_layernorm_once_and_loads_official_finetune():
    torch.manual_seed(0)
    clf = ViTClassifier(num_classes=3, **ARCH)
    assert isinstance(clf.encoder.norm, torch.nn.Identity)
    n_ln = sum(isinstance(m, torch.nn.LayerNorm) for m in clf.modules())
    assert n_ln == 2 * ARCH["depth"] + 1  # two per block + fc_norm
    sd = {k.removeprefix("encoder."): v for k, v in clf.state_dict().items()}
    sd["pos_embed"] = torch.from_numpy(official_table(32, 4)).float()[None]
    sd["cls_token"] = torch.zeros(1, 1, 32)
    mapped, _ = mae_layout.classifier_state(sd)
    other = ViTClassifier(num_classes=3, **ARCH)
    other.load_state_dict(mapped, strict=True)
    x = torch.randn(2, 3, 32, 32)
    clf.eval(), other.eval()
    assert torch.equal(clf(x), other(x))
