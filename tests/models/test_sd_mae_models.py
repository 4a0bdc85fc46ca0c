"""Shape, masking and size checks of the SD-MAE models (tiny configs, one full-size count)."""

import pytest
import torch

from models.sd_mae import DINOHead, MaskedAutoencoder, ViTClassifier, ViTEncoder
from models.sd_mae.masking import random_masking
from models.sd_mae.patchify import normalised_target, patchify, unpatchify
from models.sd_mae.pos_embed import sincos_2d

TINY = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)


def tiny_mae(**kw):
    return MaskedAutoencoder(**TINY, decoder_dim=16, decoder_depth=1, decoder_heads=2, **kw)


def test_vit_s16_encoder_has_about_22m_parameters():
    enc = ViTEncoder()  # the paper's ViT-S/16 at 224
    n = sum(p.numel() for p in enc.parameters())
    assert 21.0e6 < n < 22.5e6, n
    assert enc.num_patches == 196 and len(enc.blocks) == 12
    assert enc.blocks[0].attn.num_heads == 6


def test_decoder_is_four_blocks_192_wide():
    m = MaskedAutoencoder(img_size=64, patch_size=16)
    assert len(m.decoder.blocks) == 4
    assert m.decoder.embed.out_features == 192
    assert m.decoder.pred.out_features == 16 * 16 * 3


@pytest.mark.parametrize("ratio", [0.0, 0.6, 0.75])
def test_masking_is_exact_and_per_image(ratio):
    torch.manual_seed(0)
    keep, restore, mask = random_masking(8, 196, ratio)
    assert (mask.sum(1) == int(ratio * 196)).all()
    assert keep.shape == (8, 196 - int(ratio * 196))
    # visible ids are exactly the unmasked positions
    assert torch.all(torch.gather(mask, 1, keep) == 0)
    if ratio > 0:
        assert not torch.equal(mask[0], mask[1])  # differs between images


def test_masking_rejects_bad_ratio():
    with pytest.raises(ValueError, match="mask_ratio"):
        random_masking(2, 16, 1.0)
    with pytest.raises(ValueError, match="mask_ratio"):
        tiny_mae(mask_ratio=-0.1)(torch.randn(1, 3, 32, 32))


def test_patchify_roundtrip_and_normalised_target():
    x = torch.randn(2, 3, 32, 32)
    p = patchify(x, 8)
    assert p.shape == (2, 16, 192)
    assert torch.equal(unpatchify(p, 8), x)
    t = normalised_target(p)
    assert torch.allclose(t.mean(-1), torch.zeros(2, 16), atol=1e-5)
    assert torch.allclose(t.var(-1), torch.ones(2, 16), atol=1e-3)


def test_sincos_pos_embed_is_fixed_and_distinct():
    pe = sincos_2d(32, 4)
    assert pe.shape == (16, 32)
    assert torch.cdist(pe, pe).fill_diagonal_(1).min() > 0.1
    enc = ViTEncoder(**TINY)
    assert "pos_embed" not in dict(enc.named_parameters())


def test_mae_forward_visible_only():
    torch.manual_seed(0)
    m = tiny_mae(mask_ratio=0.75)
    out = m(torch.randn(3, 3, 32, 32))
    assert out.pred.shape == (3, 16, 192) and out.target.shape == (3, 16, 192)
    assert out.enc_vis.shape == (3, 4, 32) and out.dec_vis.shape == (3, 4, 16)
    assert (out.mask.sum(1) == 12).all()


def test_encoder_only_sees_visible_patches():
    """Changing a masked patch must not change the encoder output of the visible ones."""
    torch.manual_seed(0)
    enc = ViTEncoder(**TINY).eval()
    x = torch.randn(1, 3, 32, 32)
    keep = torch.tensor([[0, 5, 10, 15]])
    y1 = enc(x, keep)
    x2 = x.clone()
    x2[:, :, 0:8, 8:16] += 5.0  # patch 1 is masked
    assert torch.allclose(enc(x2, keep), y1)
    x3 = x.clone()
    x3[:, :, 0:8, 0:8] += 5.0  # patch 0 is visible
    assert not torch.allclose(enc(x3, keep), y1)


def test_classifier_and_layer_ids():
    clf = ViTClassifier(num_classes=5, **TINY, drop_path_rate=0.1)
    assert clf(torch.randn(2, 3, 32, 32)).shape == (2, 5)
    assert clf.layer_id("encoder.patch_embed.proj.weight") == 0
    assert clf.layer_id("encoder.blocks.1.mlp.fc1.weight") == 2
    assert clf.layer_id("head.weight") == 3
    # encoder weights move between MAE and classifier without renaming; the classifier's
    # global-pool head replaces the encoder's final norm (fc_norm), so norm.* is not taken
    mae = tiny_mae()
    sd = {k: v for k, v in mae.encoder.state_dict().items() if not k.startswith("norm.")}
    clf.encoder.load_state_dict(sd, strict=True)


def test_dino_head_bottleneck_is_l2_normalised():
    h = DINOHead(32, out_dim=64, hidden_dim=16, bottleneck_dim=8)
    z = torch.nn.functional.normalize(h.mlp(torch.randn(5, 32)), dim=-1)
    assert torch.allclose(z.norm(dim=-1), torch.ones(5))
    assert h(torch.randn(2, 7, 32)).shape == (2, 7, 64)
    # the weight-norm gain is frozen at 1 (DINO's norm_last_layer)
    assert not h.last_layer.parametrizations.weight.original0.requires_grad
