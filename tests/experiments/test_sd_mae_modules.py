"""Optimiser schedule, checkpoint hand-over with its architecture check, and the modules."""

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from core.checks import ConfigError
from experiments.sd_mae.checkpoint import load_encoder, save_encoder
from experiments.sd_mae.figures import reconstruct, reconstruction_grid
from experiments.sd_mae.finetune import FineTune
from experiments.sd_mae.optim import decay_groups, scaled_lr, warmup_cosine
from experiments.sd_mae.pretrain import MAEPretrain
from experiments.sd_mae.probe import LinearProbe
from models.sd_mae import MaskedAutoencoder, ViTClassifier, ViTEncoder
from models.sd_mae.patchify import patchify

ENC = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)
HEAD = dict(head_out_dim=32, head_hidden_dim=16, head_bottleneck_dim=8)


def tiny_mae(ratio=0.5):
    return MaskedAutoencoder(
        **ENC, decoder_dim=16, decoder_depth=1, decoder_heads=2, mask_ratio=ratio
    )


def loader(n=16, classes=3):
    x = torch.randn(n, 3, 32, 32)
    return DataLoader(TensorDataset(x, torch.arange(n) % classes), batch_size=8)


def trainer(epochs=1):
    return L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def test_schedule_and_scaling():
    assert scaled_lr(1.5e-4, 1024) == pytest.approx(6e-4)  # the authors' lr at batch 1024
    f = warmup_cosine(100, 10)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.5, abs=0.02) and f(99) < 0.01


def test_layer_decay_groups():
    clf = ViTClassifier(3, **ENC)
    groups = decay_groups(clf.named_parameters(), 0.05, clf.layer_id, 3, 0.75)
    scales = {g["lr_scale"] for g in groups}
    assert scales == {0.75**3, 0.75**2, 0.75, 1.0}
    for g in groups:
        if g["weight_decay"] > 0:
            assert all(p.ndim > 1 for p in g["params"])
    n = sum(p.numel() for g in groups for p in g["params"])
    assert n == sum(p.numel() for p in clf.parameters())


def test_encoder_checkpoint_roundtrip_and_arch_check(tmp_path):
    mae = tiny_mae()
    path = save_encoder(tmp_path / "encoder.pt", mae.encoder, method="sdmae")
    enc = ViTEncoder(**ENC)
    load_encoder(path, enc)
    assert torch.equal(enc.blocks[0].attn.qkv.weight, mae.encoder.blocks[0].attn.qkv.weight)
    with pytest.raises(ConfigError, match="depth: checkpoint 2 vs model 3"):
        load_encoder(path, ViTEncoder(**{**ENC, "depth": 3}))
    with pytest.raises(ConfigError, match="does not exist"):
        load_encoder(tmp_path / "nope.pt", enc)
    torch.save({"foo": 1}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="not an SD-MAE encoder checkpoint"):
        load_encoder(tmp_path / "other.pt", enc)


@pytest.mark.parametrize("ratio", [0.0, 1.0, 1.5])
def test_pretrain_rejects_mask_ratio_outside_open_interval(ratio):
    with pytest.raises(ConfigError, match="model.mask_ratio"):
        MAEPretrain(tiny_mae(ratio))


def test_pretrain_rejects_mask_ratio_that_masks_no_patch():
    # 0.01 of 16 patches masks int(0.16) = 0: a plain autoencoder, refused with the bound
    with pytest.raises(ConfigError, match=r"model.mask_ratio: 0.01 masks .* = 0 of the 16.*0.0625"):
        MAEPretrain(tiny_mae(0.01))
    MAEPretrain(tiny_mae(1 / 16))  # exactly one patch masked is allowed


def test_pretrain_rejects_unknown_method():
    with pytest.raises(ConfigError, match="module.method"):
        MAEPretrain(tiny_mae(), method="beit")


@pytest.mark.parametrize(
    ("key", "value"),
    [("center_on", "ema"), ("token_reduce", "max"), ("sinkhorn_iters", 0)],
)
def test_pretrain_rejects_bad_distillation_option(key, value):
    with pytest.raises(ConfigError, match=f"module.objective.{key}"):
        MAEPretrain(tiny_mae(), objective={**HEAD, key: value})


@pytest.mark.parametrize("method", ["sdmae"])  # the other objectives: tests/losses
def test_pretrain_step_and_lightning_ckpt_feeds_probe(method, tmp_path):
    torch.manual_seed(0)
    mod = MAEPretrain(tiny_mae(), method=method, objective=HEAD, batch_size=8, warmup_epochs=0)
    t = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    before = mod.net.encoder.blocks[0].mlp.fc1.weight.clone()
    t.fit(mod, loader(), loader())
    assert not torch.equal(before, mod.net.encoder.blocks[0].mlp.fc1.weight)
    assert torch.isfinite(t.callback_metrics["val/loss"])
    t.save_checkpoint(tmp_path / "pre.ckpt")
    probe = LinearProbe(ViTEncoder(**ENC), 3, encoder_ckpt=str(tmp_path / "pre.ckpt"))
    assert torch.equal(
        probe.encoder.blocks[0].mlp.fc1.weight, mod.net.encoder.blocks[0].mlp.fc1.weight
    )


def test_probe_freezes_encoder_and_learns_head(tmp_path):
    enc = ViTEncoder(**ENC)
    path = save_encoder(tmp_path / "e.pt", enc)
    probe = LinearProbe(ViTEncoder(**ENC), 3, encoder_ckpt=str(path), batch_size=8, warmup_epochs=0)
    frozen = probe.encoder.blocks[0].attn.qkv.weight.clone()
    head = probe.head.weight.clone()
    trainer(2).fit(probe, loader(), loader())
    assert torch.equal(frozen, probe.encoder.blocks[0].attn.qkv.weight)
    assert not torch.equal(head, probe.head.weight)
    assert not probe.bn.affine
    probe.train()
    assert probe.encoder.training is False and probe.bn.training


def test_finetune_checks_architecture_and_trains(tmp_path):
    path = save_encoder(tmp_path / "e.pt", ViTEncoder(**ENC))
    with pytest.raises(ConfigError, match="embed_dim"):
        FineTune(ViTClassifier(3, **{**ENC, "embed_dim": 64}), encoder_ckpt=str(path))
    ft = FineTune(ViTClassifier(3, **ENC), encoder_ckpt=str(path), batch_size=8, warmup_epochs=0)
    t = trainer(1)
    t.fit(ft, loader(), loader())
    res = t.test(ft, loader(), verbose=False)[0]
    assert {"test/acc", "test/kappa", "test/f1_macro", "test/f1_0"} <= set(res)
    groups = t.optimizers[0].param_groups
    assert len({g["lr_scale"] for g in groups}) == 4  # patch embed, 2 blocks, head
    sched = t.lr_scheduler_configs[0].scheduler
    peak = [f(0) for f in sched.lr_lambdas]  # warm-up 0: full lr at step 0, scaled per layer
    assert max(peak) == pytest.approx(1.0) and min(peak) == pytest.approx(0.75**3)


def test_reconstruction_keeps_visible_patches_and_draws(tmp_path):
    torch.manual_seed(0)
    mae = tiny_mae(0.75)
    imgs = torch.randn(2, 3, 32, 32)
    masked, recon = reconstruct(mae, imgs)
    torch.manual_seed(0)
    mask = mae(imgs).mask.bool()
    vis = ~mask
    assert torch.allclose(patchify(recon, 8)[vis], patchify(imgs, 8)[vis])
    assert (patchify(masked, 8)[mask] == 0).all()
    png = reconstruction_grid({"mae": mae, "sdmae": tiny_mae(0.75)}, imgs, tmp_path / "r.png")
    assert png.stat().st_size > 1000


def test_reconstruction_of_a_zero_predictor_does_not_reproduce_the_image():
    # a predictor that outputs 0 everywhere knows nothing of the masked patches: its figure must
    # not show them (per-patch true mean/std de-normalisation would paint each patch's colour)
    torch.manual_seed(0)
    mae = tiny_mae(0.75)
    torch.nn.init.zeros_(mae.decoder.pred.weight)
    torch.nn.init.zeros_(mae.decoder.pred.bias)
    coarse = torch.randn(2, 3, 4, 4)  # one colour per 8 px patch: patch means carry the image
    imgs = torch.nn.functional.interpolate(coarse, scale_factor=8) + 0.1 * torch.randn(2, 3, 32, 32)
    _, recon = reconstruct(mae, imgs)
    torch.manual_seed(0)
    mask = mae(imgs).mask.bool()
    got, true = patchify(recon, 8)[mask], patchify(imgs, 8)[mask]
    # every masked patch is drawn with the same (visible-patch) value within an image
    per_img = patchify(recon, 8)[0][mask[0]]
    assert torch.allclose(per_img, per_img[:1].expand_as(per_img))
    # and the masked content is not recovered: no better than the image mean
    err = (got - true).pow(2).mean()
    assert err > 0.5 * true.var()


def test_finetune_recipe_is_timms_layer_decay_mixup_and_augment(monkeypatch):
    from timm.data import Mixup
    from timm.data.random_erasing import RandomErasing
    from timm.optim import Lars

    import experiments.sd_mae.finetune as ft_mod
    import experiments.sd_mae.probe as probe_mod
    from datamodules.sd_mae.transforms import train_transform

    monkeypatch.setattr(ft_mod, "steps_for", lambda trainer, warm: (10, 0))
    monkeypatch.setattr(probe_mod, "steps_for", lambda trainer, warm: (10, 0))
    monkeypatch.setattr(FineTune, "log", lambda *a, **k: None)
    for cls in (FineTune, LinearProbe):  # configure_optimizers outside a Trainer
        monkeypatch.setattr(cls, "trainer", property(lambda self: None))
    ft = FineTune(ViTClassifier(3, **ENC), batch_size=256, warmup_epochs=0)
    opt = ft.configure_optimizers()["optimizer"]
    names = {id(p): n for n, p in ft.net.named_parameters()}
    scale = {names[id(p)]: g["lr_scale"] for g in opt.param_groups for p in g["params"]}
    # MAE's layer ids: patch embedding 0, block i -> i + 1, fc_norm / head last (depth 2)
    assert scale["encoder.patch_embed.proj.weight"] == pytest.approx(0.75**3)
    assert scale["encoder.blocks.1.mlp.fc1.weight"] == pytest.approx(0.75)
    assert scale["fc_norm.weight"] == scale["head.weight"] == 1.0
    assert isinstance(ft.mixup, Mixup) and ft.mixup.mixup_alpha == 0.8
    assert ft.mixup.cutmix_alpha == 1.0
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    assert ft.training_step((x, y), 0).ndim == 0
    assert FineTune(ViTClassifier(3, **ENC), mixup=0, cutmix=0).mixup is None
    tf = train_transform("finetune", 32, finetune_augment="mae")
    assert any(isinstance(t, RandomErasing) for t in tf.transforms)
    assert "RandAugment" in repr(tf)
    probe = LinearProbe(ViTEncoder(**ENC), 3, optimizer="lars", warmup_epochs=0)
    assert isinstance(probe.configure_optimizers()["optimizer"], Lars)
