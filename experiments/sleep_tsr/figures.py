"""Figures: hypnogram (true vs predicted) and test-loss curves per gamma (the paper's Fig. 2)."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

STAGE_ORDER = ("W", "REM", "N1", "N2", "N3")  # clinical hypnogram order, top to bottom
_CLASS_TO_ROW = {0: 0, 4: 1, 1: 2, 2: 3, 3: 4}  # class index (W, N1, N2, N3, REM) -> row


def _plt():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_hypnogram(y_true: np.ndarray, y_pred: np.ndarray, path: Path, title: str = "") -> Path:
    """Two stacked step plots of one night, 30-s epochs on the x axis (hours)."""
    plt = _plt()
    hours = np.arange(len(y_true)) * 30 / 3600
    fig, axes = plt.subplots(2, 1, figsize=(10, 4), sharex=True)
    for ax, y, name in ((axes[0], y_true, "scored"), (axes[1], y_pred, "predicted")):
        rows = np.array([_CLASS_TO_ROW.get(int(v), np.nan) for v in y], dtype=float)
        ax.step(hours, rows, where="post", lw=0.8, color="k" if name == "scored" else "C3")
        ax.set_yticks(range(5), STAGE_ORDER)
        ax.set_ylim(4.5, -0.5)
        ax.set_ylabel(name)
        ax.grid(alpha=0.2)
    acc = float(np.mean(np.asarray(y_true) == np.asarray(y_pred))) if len(y_true) else float("nan")
    axes[0].set_title(f"{title} (agreement {acc:.1%})")
    axes[1].set_xlabel("time (h)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def read_curve(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(steps, test CE) from a ``test_loss_curve.csv``."""
    with open(path) as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("test_ce")]
    return np.array([float(r["step"]) for r in rows]), np.array([float(r["test_ce"]) for r in rows])


def moving_average(y: np.ndarray, window: int = 5) -> np.ndarray:
    """Trailing moving average (the paper smooths Fig. 2 with a window of 5)."""
    if window <= 1 or len(y) == 0:
        return y
    c = np.cumsum(np.insert(y, 0, 0.0))
    out = np.empty_like(y)
    for i in range(len(y)):
        lo = max(0, i + 1 - window)
        out[i] = (c[i + 1] - c[lo]) / (i + 1 - lo)
    return out


def plot_loss_curve(curve_csv: Path, path: Path) -> Path:
    """One job's test CE during training."""
    return plot_loss_curves({"": [curve_csv]}, path, window=1)


def plot_loss_curves(curves: Mapping[str, Sequence[Path]], path: Path, window: int = 5) -> Path:
    """Test CE during training, one line per label (gamma), averaged over the given runs."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, files in curves.items():
        series = [read_curve(f) for f in files if Path(f).is_file()]
        series = [s for s in series if len(s[0])]
        if not series:
            continue
        n = min(len(s[0]) for s in series)
        steps = series[0][0][:n]
        mean = np.mean([s[1][:n] for s in series], axis=0)
        ax.plot(steps, moving_average(mean, window), marker="o", ms=3, label=label or None)
    ax.set_xlabel("training step")
    ax.set_ylabel("test cross-entropy")
    ax.grid(alpha=0.3)
    if any(curves):
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
