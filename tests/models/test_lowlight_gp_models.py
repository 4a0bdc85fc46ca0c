"""Unit tests of the lowlight_gp models: patches, GP, selection, enhancer, LIME, reference CNN."""

from __future__ import annotations

import gpytorch
import numpy as np
import pytest
import torch

from models.lowlight_gp import patches as patches_module
from models.lowlight_gp.color import rgb_to_ycbcr, ycbcr_to_rgb
from models.lowlight_gp.enhancer import GPEnhancer, to_planes
from models.lowlight_gp.gp import ExactSEGP, _GaussianNLL, _nll_and_grad
from models.lowlight_gp.lime import lime_enhance
from models.lowlight_gp.patches import (
    centre_index,
    fold_patches,
    neighbourhoods,
    patch_pairs,
    unique_rows,
)
from models.lowlight_gp.reference_cnn import ReferenceCNN
from models.lowlight_gp.selection import gpe_unique_pairs, kmeans

torch.set_num_threads(1)


def smooth_image(h: int = 48, w: int = 48, seed: int = 0) -> np.ndarray:
    """A textured RGB test image in [0.05, 0.95] (gradients + blobs + edges)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack(
        [
            0.5 + 0.4 * np.sin(6 * xx + rng.uniform(0, 3)) * np.cos(4 * yy),
            0.5 + 0.4 * np.cos(5 * yy + rng.uniform(0, 3)),
            0.3 + 0.6 * ((xx > 0.5) ^ (yy > 0.4)),
        ],
        axis=2,
    )
    return np.clip(img, 0.05, 0.95)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))


# ---- colour / patches -------------------------------------------------------------------------
def test_ycbcr_round_trip():
    img = smooth_image()
    assert np.allclose(ycbcr_to_rgb(rgb_to_ycbcr(img)), img, atol=1e-9)


def test_patch_pairs_positions_and_shape():
    low = np.arange(2 * 7 * 8, dtype=float).reshape(2, 7, 8)
    lo, re = patch_pairs(low, low + 1000, 3, 2)
    assert lo.shape == (2 * 2 * 4, 6)
    assert np.array_equal(lo[0], [0, 1, 8, 9, 16, 17])  # first 3x2 patch, row-major
    assert np.array_equal(re - lo, np.full_like(lo, 1000))
    with pytest.raises(ValueError, match="smaller than one"):
        patch_pairs(np.zeros((1, 2, 2)), np.zeros((1, 2, 2)), 3, 3)


def test_neighbourhoods_centre_and_fold_identity():
    planes = torch.rand(3, 9, 11)
    nb = neighbourhoods(planes, 3, 3)
    assert nb.shape == (3 * 9 * 11, 9)
    assert torch.equal(nb[:, centre_index(3, 3)], planes.reshape(-1))
    # Folding each pixel's own neighbourhood back gives the image (every copy agrees).
    assert torch.allclose(fold_patches(nb, 3, 9, 11, 3, 3), planes, atol=1e-6)


# ---- GP ------------------------------------------------------------------------------------
class _GpytorchModel(gpytorch.models.ExactGP):
    def __init__(self, x, y, likelihood, kernel):
        super().__init__(x, y, likelihood)
        self.mean = gpytorch.means.ZeroMean()
        self.kernel = kernel

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean(x), self.kernel(x))


def test_gp_matches_gpytorch_likelihood_and_posterior_mean():
    torch.manual_seed(0)
    x = torch.rand(60, 4, dtype=torch.float64)
    y = torch.sin(3 * x).sum(1) + 0.05 * torch.randn(60, dtype=torch.float64)
    gp = ExactSEGP(iterations=15).fit(x, y)
    ys = (y - gp.y_mean[:, 0]) / gp.y_std
    model = _GpytorchModel(x, ys, gp.likelihood, gp.kernel).double()
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(gp.likelihood, model)
    model.train()
    with gpytorch.settings.max_cholesky_size(10**6):
        ref_nll = -mll(model(x), ys).item()
        assert gp.neg_mll(x, ys[:, None]).item() == pytest.approx(ref_nll, rel=1e-6)
        model.eval()
        xq = torch.rand(200, 4, dtype=torch.float64)
        with torch.no_grad():
            ref_mean = model(xq).mean * gp.y_std + gp.y_mean[:, 0]
    ours = gp.predict(xq, chunk=64, dtype=torch.float64)[:, 0]
    assert torch.allclose(ours, ref_mean, atol=1e-6)
    assert (gp.predict(xq, chunk=64)[:, 0].double() - ref_mean).abs().max() < 1e-3  # float32


def test_closed_form_likelihood_gradient_equals_autograd():
    # The fit's L-BFGS uses hand-written derivatives in (length-scale, signal, noise).
    torch.manual_seed(2)
    x = torch.rand(25, 3, dtype=torch.float64)
    ys = torch.randn(25, 2, dtype=torch.float64)
    sq = torch.cdist(x, x).square()
    w = 1.0 / torch.randint(1, 6, (25,)).double()
    vals = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (0.4, 1.3, 0.07)]
    ls, s, s2 = vals
    kmat = s * torch.exp(-0.5 * sq / ls**2) + torch.diag(s2 * w + 1e-8)
    ref = _GaussianNLL.apply(kmat, ys)
    ref.backward()
    loss, grads = _nll_and_grad(sq, ys, w, 0.4, 1.3, 0.07, 1e-8)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-12)
    assert grads == pytest.approx([v.grad.item() for v in vals], rel=1e-9)


def test_unique_rows_is_exact_even_when_the_hash_collides(monkeypatch):
    rows = torch.tensor([[1.0, 2.0], [3.0, 4.0], [1.0, 2.0], [2.0, 1.0], [3.0, 4.0]])
    first, inverse = unique_rows(rows)
    assert torch.equal(rows[first][inverse], rows) and len(first) == 3
    assert sorted(first.tolist()) == [0, 1, 3]  # each group's first occurrence
    # A projection under which (1, 2) and (2, 1) collide: the check falls back to sorting rows.
    monkeypatch.setattr(patches_module, "_HASH", torch.ones(64, dtype=torch.float64))
    first, inverse = unique_rows(rows)
    assert torch.equal(rows[first][inverse], rows) and len(first) == 3


def test_gp_fits_a_smooth_function_and_survives_degenerate_data():
    torch.manual_seed(1)
    x = torch.rand(80, 2, dtype=torch.float64)
    f = lambda z: torch.sin(4 * z[:, 0]) + z[:, 1] ** 2  # noqa: E731
    gp = ExactSEGP(iterations=30).fit(x, f(x))
    xq = torch.rand(300, 2, dtype=torch.float64)
    assert (gp.predict(xq, dtype=torch.float64)[:, 0] - f(xq)).abs().mean() < 0.02
    # Identical inputs and constant targets: jitter keeps K invertible, prediction is the constant.
    gp = ExactSEGP(iterations=5).fit(torch.ones(10, 3), torch.full((10,), 0.3))
    out = gp.predict(torch.rand(5, 3))
    assert torch.isfinite(out).all() and torch.allclose(out, torch.full_like(out, 0.3), atol=1e-4)


# ---- selection -------------------------------------------------------------------------------
def test_kmeans_backends_agree_and_k_too_large_is_an_error():
    rng = np.random.default_rng(0)
    blobs = np.concatenate([rng.normal(c, 0.05, (200, 4)) for c in (0.0, 1.0, 2.0)])
    inertia = {}
    for backend in ("sklearn", "torch"):
        c, _ = kmeans(blobs, 3, seed=0, backend=backend)
        assert c.shape == (3, 4)
        assert np.allclose(np.sort(c[:, 0]), [0, 1, 2], atol=0.05)
        inertia[backend] = ((blobs[:, None] - c[None]) ** 2).sum(-1).min(1).sum()
    assert inertia["torch"] == pytest.approx(inertia["sklearn"], rel=0.05)
    with pytest.raises(ValueError, match="only 600 patch pairs"):
        kmeans(blobs, 601)


def test_gpe_unique_pairs_keeps_one_pair_per_mean_intensity_bin():
    low = np.array([[0.1, 0.1], [0.1, 0.1], [0.5, 0.5], [0.1, 0.1]])
    ref = np.array([[0.2, 0.2], [0.2, 0.2], [0.9, 0.9], [0.6, 0.6]])
    assert gpe_unique_pairs(low, ref).tolist() == [0, 2, 3]


# ---- enhancer --------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["lm", "cm"])
@pytest.mark.parametrize("target", ["centre", "patch"])
def test_enhancer_with_an_ideal_reference_beats_the_dark_input(mode, target):
    img = smooth_image(40, 40)
    dark = np.round(img**3.5 * 255) / 255
    ref = to_planes(img, mode)  # a perfect reference CNN
    res = GPEnhancer(mode, k=40, target=target, gp_iterations=20).enhance(dark, ref)
    assert res.image.shape == img.shape and np.isfinite(res.image).all()
    assert psnr(res.image, img) > psnr(dark, img) + 5.0
    assert set(res.timings) == {"cluster", "gp_fit", "predict"} and res.n_train == 40
    if mode == "lm":  # chroma is the dark input's (except where RGB clipping bends it)
        gap = np.abs(rgb_to_ycbcr(res.image)[..., 1:] - rgb_to_ycbcr(dark)[..., 1:])
        assert np.median(gap) < 1e-6


@pytest.mark.parametrize("weight_centres", [True, False])
def test_approximation_tends_to_the_full_gp_as_k_grows(weight_centres):
    img = smooth_image(36, 36, seed=3)
    dark = np.round(img**3 * 255) / 255
    # A smooth, non-trivial reference with a little noise, like a CNN output: all 432 pairs of
    # a 36x36 RGB image are distinct, so k = 432 makes every pair its own cluster.
    noise = np.random.default_rng(0).normal(0, 0.01, (3, 36, 36))
    ref = to_planes(np.sqrt(dark), "cm") ** 0.9 + noise
    full = GPEnhancer("cm", selection="full", gp_iterations=20).enhance(dark, ref).image
    gaps = [
        np.abs(
            GPEnhancer("cm", k=k, gp_iterations=20, weight_centres=weight_centres)
            .enhance(dark, ref)
            .image
            - full
        ).mean()
        for k in (3, 30, 300, 432)
    ]
    assert gaps[3] < gaps[2] < gaps[1] < gaps[0]
    assert gaps[2] < 0.005 and gaps[3] < 1e-3


def test_weighted_centres_give_the_full_gp_posterior_of_duplicated_pairs():
    # n_j identical observations at one input = their mean with noise s2 / n_j: same posterior.
    torch.manual_seed(0)
    xu = torch.rand(12, 3, dtype=torch.float64)
    yu = torch.sin(4 * xu).sum(1)
    counts = torch.randint(1, 5, (12,)).double()
    gp = ExactSEGP(iterations=5).fit(xu, yu, counts)
    reps = counts.long()
    x, y = xu.repeat_interleave(reps, 0), yu.repeat_interleave(reps, 0)
    assert gp.y_mean.item() == pytest.approx(y.mean().item())
    ls, s, s2 = gp.lengthscale, gp.outputscale, gp.noise
    kern = lambda a, b: s * torch.exp(-0.5 * torch.cdist(a, b) ** 2 / ls**2)  # noqa: E731
    xq = torch.rand(50, 3, dtype=torch.float64)
    ys = (y - gp.y_mean[0]) / gp.y_std
    eye = torch.eye(len(x), dtype=torch.float64)
    full = kern(xq, x) @ torch.linalg.solve(kern(x, x) + s2 * eye, ys) * gp.y_std + gp.y_mean[0]
    assert torch.allclose(gp.predict(xq, dtype=torch.float64)[:, 0], full, atol=1e-6)
    with pytest.raises(ValueError, match="counts"):
        ExactSEGP().fit(xu, yu, torch.zeros(12))


def test_enhancer_handles_a_constant_image_and_rejects_bad_options():
    flat = np.full((24, 24, 3), 0.1)
    res = GPEnhancer("cm", k=8, gp_iterations=5).enhance(flat, np.full((3, 24, 24), 0.4))
    assert np.allclose(res.image, 0.4, atol=1e-3)
    with pytest.raises(ValueError, match="enhancer.mode"):
        GPEnhancer("rgb")
    with pytest.raises(ValueError, match="enhancer.patch_size"):
        GPEnhancer(patch_size=(1, 1))
    with pytest.raises(ValueError, match="do not match"):
        GPEnhancer("lm", k=4).enhance(flat, np.zeros((3, 24, 24)))
    with pytest.raises(ValueError, match="patch pairs"):
        GPEnhancer("lm", k=500).enhance(smooth_image(24, 24), np.zeros((1, 24, 24)))


def test_gpe_and_full_selection_sizes():
    img = smooth_image(30, 30)
    dark = np.round(img**3 * 255) / 255
    ref = to_planes(img, "lm")
    full = GPEnhancer("lm", selection="full", gp_iterations=5).enhance(dark, ref)
    gpe = GPEnhancer("lm", selection="gpe", gp_iterations=5).enhance(dark, ref)
    assert full.n_train == full.n_pairs == 100
    assert 2 <= gpe.n_train < full.n_train


# ---- LIME and the reference CNN ----------------------------------------------------------------
def test_lime_brightens_a_dark_image():
    img = smooth_image(40, 48)
    dark = img**3
    out = lime_enhance(dark)
    assert out.shape == img.shape and out.min() >= 0 and out.max() <= 1
    assert psnr(out, img) > psnr(dark, img) + 3.0
    with pytest.raises(ValueError, match="RGB"):
        lime_enhance(dark[..., 0])


@pytest.mark.parametrize("channels", [1, 3])
def test_reference_cnn_shapes(channels):
    net = ReferenceCNN(channels)
    x = torch.rand(2, channels, 20, 24)
    out = net(x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    with pytest.raises(ValueError, match="in_channels"):
        ReferenceCNN(2)


def test_query_deduplication_gives_the_same_image():
    img = smooth_image(32, 32)
    dark = np.round(img**5 * 255) / 255  # many identical dark neighbourhoods
    ref = to_planes(img, "cm")
    a = GPEnhancer("cm", k=30, dedupe_queries=True).enhance(dark, ref).image
    b = GPEnhancer("cm", k=30, dedupe_queries=False).enhance(dark, ref).image
    assert np.allclose(a, b, atol=1e-6)


def test_gp_on_nearly_black_patches_starts_inside_the_length_scale_bound():
    x = torch.rand(30, 9, dtype=torch.float64) * 1e-3  # median distance << 0.01
    gp = ExactSEGP(iterations=3).fit(x, x.sum(1))
    assert gp.lengthscale >= 0.01 and torch.isfinite(gp.predict(x)).all()
