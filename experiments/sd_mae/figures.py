"""Reconstruction grids (paper Fig. 3): original / masked / reconstruction per model.

python -m experiments.sd_mae.figures <sweep_dir>   # MAE vs SD-MAE from a methods sweep
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from datamodules.sd_mae.transforms import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from models.sd_mae.mae import MaskedAutoencoder  # noqa: E402
from models.sd_mae.patchify import patchify, unpatchify  # noqa: E402


def _denorm(x: torch.Tensor) -> torch.Tensor:
    m = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    s = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x * s + m).clamp(0, 1)


@torch.no_grad()
def reconstruct(model: MaskedAutoencoder, imgs: torch.Tensor, seed: int = 0):
    """(masked image, reconstruction with visible patches pasted back), both in pixel space.

    A normalised-pixel model predicts per-patch standardised values. They are mapped back with
    statistics the model could have known: the mean over the image's *visible* patches of the
    per-patch mean and std. (MAE's demo uses each masked patch's own true mean/std, which
    paints the hidden patch's colour and contrast from the target: a zero predictor then draws
    a recognisable image.)
    """
    model.eval()
    torch.manual_seed(seed)
    out = model(imgs)
    p = model.patch_size
    target = patchify(imgs, p)
    pred = out.pred
    m = out.mask.unsqueeze(-1)
    if model.norm_pix_loss:
        vis = 1 - m  # (B, N, 1)
        n_vis = vis.sum(1, keepdim=True).clamp_min(1)
        patch_mean = target.mean(-1, keepdim=True)
        patch_std = (target.var(-1, keepdim=True) + 1e-6) ** 0.5
        mean = (patch_mean * vis).sum(1, keepdim=True) / n_vis
        std = (patch_std * vis).sum(1, keepdim=True) / n_vis
        pred = pred * std + mean
    masked = unpatchify(target * (1 - m), p)
    recon = unpatchify(target * (1 - m) + pred * m, p)
    return masked, recon


def reconstruction_grid(
    models: dict[str, MaskedAutoencoder], imgs: torch.Tensor, path: str | Path, seed: int = 0
) -> Path:
    """One row per image: original, then (masked, reconstruction) per model, same masks."""
    cols = [("original", imgs)]
    for name, model in models.items():
        masked, recon = reconstruct(model, imgs, seed)
        if len(cols) == 1:
            cols.append(("masked", masked))
        cols.append((f"{name} reconstruction", recon))
    n = imgs.shape[0]
    fig, axes = plt.subplots(n, len(cols), figsize=(2.2 * len(cols), 2.2 * n), squeeze=False)
    for j, (title, batch) in enumerate(cols):
        pics = _denorm(batch.float().cpu())
        for i in range(n):
            ax = axes[i][j]
            ax.imshow(pics[i].permute(1, 2, 0).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def load_mae(job_dir: Path) -> tuple[str, MaskedAutoencoder, torch.Tensor]:
    """(method, model, sample images) saved by the chained pipeline in a job directory."""
    blob = torch.load(job_dir / "checkpoints" / "mae.pt", map_location="cpu", weights_only=False)
    model = MaskedAutoencoder(**blob["config"])
    model.load_state_dict(blob["state_dict"])
    return blob["method"], model, blob["samples"]


def compare_sweep(sweep_dir: str | Path, out: str | Path | None = None) -> Path:
    """MAE vs SD-MAE (and any other pre-trained method) on the same images and masks."""
    sweep_dir = Path(sweep_dir)
    models: dict[str, MaskedAutoencoder] = {}
    samples = None
    for f in sorted(sweep_dir.glob("*/checkpoints/mae.pt")):
        method, model, imgs = load_mae(f.parent.parent)
        models.setdefault(method, model)
        samples = imgs if samples is None else samples
    if not models:
        raise FileNotFoundError(f"no */checkpoints/mae.pt under {sweep_dir}: run the methods sweep")
    order = {"mae": 0, "sdmae": 1, "mae_contrastive": 2}
    models = dict(sorted(models.items(), key=lambda kv: order.get(kv[0], 9)))
    return reconstruction_grid(models, samples, out or sweep_dir / "reconstructions.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("sweep_dir")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    print(compare_sweep(a.sweep_dir, a.out))


if __name__ == "__main__":
    main()
