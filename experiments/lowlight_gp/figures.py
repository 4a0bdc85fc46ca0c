"""Figures of the lowlight_gp study (matplotlib, Agg backend; PNGs in the job directory)."""

from __future__ import annotations

from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def save_png(path: Path, rgb: np.ndarray) -> Path:
    """Write an RGB float image in [0, 1] as an 8-bit PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    u8 = np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)
    cv2.imwrite(str(path), cv2.cvtColor(u8, cv2.COLOR_RGB2BGR))
    return path


def save_grid(
    path: Path, grid: list[list[np.ndarray]], columns: list[str], title: str = ""
) -> Path:
    """Rows of images under column titles (dark / reference / GPE / ours@k / LIME / original)."""
    n_rows, n_cols = len(grid), len(columns)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.2 * n_cols, 2.3 * n_rows), squeeze=False)
    for r, row in enumerate(grid):
        for c, img in enumerate(row):
            ax = axes[r][c]
            ax.imshow(np.clip(img, 0, 1))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(columns[c], fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def save_k_curve(
    path: Path, ks: list[int], psnrs: list[float], seconds: list[float], title: str = ""
) -> Path:
    """PSNR (left axis) and enhancement time (right axis) against the number of centres k."""
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot(ks, psnrs, "o-", color="tab:blue")
    ax.set_xlabel("k (cluster centres = GP training points)")
    ax.set_ylabel("PSNR (dB)", color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot(ks, seconds, "s--", color="tab:red")
    ax2.set_ylabel("time per image (s)", color="tab:red")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
