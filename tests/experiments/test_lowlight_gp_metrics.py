"""PSNR / SIFT-retrieval metrics and the reference-CNN LightningModule of lowlight_gp."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data
from skimage.transform import resize

from experiments.lowlight_gp.metrics import SiftRetrieval, psnr
from experiments.lowlight_gp.module import ReferenceCNNModule, rgb_to_y
from models.lowlight_gp.reference_cnn import ReferenceCNN

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return resize(data.astronaut(), (160, 160), anti_aliasing=True)


def test_psnr_known_values():
    a = np.zeros((4, 4))
    assert psnr(a + 0.1, a) == pytest.approx(20.0)
    assert psnr(a + 0.01, a) == pytest.approx(40.0)
    assert psnr(a, a) == float("inf")


def test_sift_retrieval_known_cases(photo):
    sift = SiftRetrieval(ratio=0.8, radius=3.0)
    same = sift.score(photo, photo)
    assert same.n_reference > 50
    assert same.precision > 0.9 and same.recall > 0.9 and same.f1 > 0.9
    # Shifted by 12 px: descriptors still match, but not at the same place -> no true positive.
    shifted = sift.score(np.roll(photo, 12, axis=1), photo)
    assert shifted.n_enhanced > 50 and shifted.precision < 0.1
    # A flat image has no keypoints: precision = recall = F1 = 0.
    flat = sift.score(np.full_like(photo, 0.5), photo)
    assert (flat.n_enhanced, flat.precision, flat.recall, flat.f1) == (0, 0.0, 0.0, 0.0)
    # A dark image gives fewer features back than a mildly dark one.
    mild = sift.score(np.round(photo**1.5 * 255) / 255, photo)
    dark = sift.score(np.round(photo**6 * 255) / 255, photo)
    assert dark.recall < mild.recall


@pytest.mark.parametrize("channels", [1, 3])
def test_reference_module_learns_to_brighten(channels):
    torch.manual_seed(0)
    net = ReferenceCNN(channels, widths=(8, 8), kernel_sizes=(3, 3, 3))
    module = ReferenceCNNModule(net, optimizer=lambda params: torch.optim.Adam(params, lr=1e-2))
    opt = module.configure_optimizers()
    bright = torch.rand(4, 3, 16, 16) * 0.6 + 0.3
    batch = (bright**3, bright)
    module.log = lambda *a, **k: None
    first = module.training_step(batch, 0).item()
    for _ in range(40):
        opt.zero_grad()
        loss = module.training_step(batch, 0)
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    assert rgb_to_y(bright).shape == (4, 1, 16, 16)
