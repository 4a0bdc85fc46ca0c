"""How much of the embedded tiles' class is given away by colour / intensity statistics alone.

A fair self-supervised benchmark must not be solvable from per-tile colour histograms or the
amount of nuclei stain: then a random encoder's mean-pooled tokens already solve it and
pre-training has nothing to show. This fits a logistic regression (5-fold CV) on per-tile
colour/intensity histograms and reports its accuracy next to chance.

    python benchmarks/sd_mae_tile_cues.py --n 200 --size 64
    python benchmarks/sd_mae_tile_cues.py --tiles-module /work/main  # another checkout's generator
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

ROOT = Path(__file__).resolve().parents[1]


def colour_features(tile: np.ndarray, bins: int = 16) -> np.ndarray:
    """Per-channel histograms, mean / std / quantiles of RGB and grey, dark-pixel fraction."""
    x = tile.reshape(-1, 3).astype(np.float32) / 255
    grey = x.mean(1)
    hist = [np.histogram(x[:, c], bins, (0, 1))[0] / len(x) for c in range(3)]
    hist.append(np.histogram(grey, bins, (0, 1))[0] / len(x))
    q = np.quantile(np.c_[x, grey], [0.05, 0.25, 0.5, 0.75, 0.95], axis=0).ravel()
    dark = [(grey < t).mean() for t in (0.4, 0.5, 0.6)]  # nuclei stain amount
    return np.concatenate([*hist, x.mean(0), x.std(0), q, dark])


def _load_generator(root: str | None):
    root = root or str(ROOT)
    path = Path(root) / "datamodules" / "sd_mae" / "tiles.py"
    sys.path.insert(0, str(Path(root)))  # the generator's own imports resolve in that checkout
    spec = importlib.util.spec_from_file_location("tiles_under_test", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="tiles per class")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tiles-module", default=None, help="checkout root whose generator to use")
    args = ap.parse_args()
    gen = _load_generator(args.tiles_module)
    classes = [c for c in gen.CLASSES if c != "BACK"]  # BACK is excluded from the task
    rng = np.random.default_rng(args.seed)
    X, y = [], []
    for k, c in enumerate(classes):
        for _ in range(args.n):
            X.append(colour_features(gen.draw_tile(c, args.size, rng)))
            y.append(k)
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=3000))
    acc = cross_val_score(clf, np.array(X), np.array(y), cv=5)
    print(f"generator: {args.tiles_module or 'this checkout'}  classes: {classes}")
    print(f"tiles: {args.n} per class at {args.size} px; features: {np.array(X).shape[1]}")
    print(f"colour/intensity histogram probe: acc {acc.mean():.3f} +- {acc.std():.3f} (5-fold)")
    print(f"chance: {1 / len(classes):.3f}")


if __name__ == "__main__":
    main()
