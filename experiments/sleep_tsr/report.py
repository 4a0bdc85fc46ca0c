"""Sweep report for sleep_tsr: metrics pooled over folds, and the test-loss curves (Fig. 2).

``pool(job_dirs)`` is the ``report.pool`` hook of ``conf/experiment/sleep_tsr.yaml``: the
runner calls it once per (gamma, seed) with that repeat's fold jobs; it concatenates their
saved test predictions into one confusion matrix, as the paper computes its metrics. As a
side effect it refreshes ``fig2_test_loss.png`` in the sweep directory, so Fig. 2 is rebuilt
whenever the report is. By hand:

    python -m experiments.sleep_tsr.report <sweep_dir>   # + pooled confusion matrices per gamma
"""

from __future__ import annotations

import argparse
import logging
from collections import defaultdict
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from experiments.sleep_tsr.figures import plot_loss_curves
from experiments.sleep_tsr.metrics import CLASSES, confusion, staging_metrics
from experiments.sleep_tsr.module import CURVE_FILE, PREDICTIONS_FILE

log = logging.getLogger(__name__)
FIG2 = "fig2_test_loss.png"


def pooled_predictions(job_dirs: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """All test epochs of the given jobs (folds), uncovered epochs dropped."""
    trues, preds = [], []
    for jd in job_dirs:
        path = Path(jd) / PREDICTIONS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; the job did not reach its test stage")
        with np.load(path) as z:
            keep = z["y_pred"] >= 0
            trues.append(z["y_true"][keep])
            preds.append(z["y_pred"][keep])
    return np.concatenate(trues), np.concatenate(preds)


def pool(job_dirs: list[Path]) -> dict[str, float]:
    """``test/*`` metrics over the pooled test epochs of all folds of one repeat."""
    y_true, y_pred = pooled_predictions(job_dirs)
    metrics = {f"test/{k}": v for k, v in staging_metrics(y_true, y_pred).items()}
    if job_dirs:
        try:
            plot_sweep_curves(Path(job_dirs[0]).parent)
        except Exception as err:  # the figure must never cost the table
            log.warning("Fig. 2 not drawn: %s", err)
    return metrics


def _job_setting(jd: Path) -> tuple[float, int] | None:
    cfg_file = jd / ".hydra" / "config.yaml"
    if not cfg_file.is_file():
        return None
    cfg = OmegaConf.load(cfg_file)
    return float(OmegaConf.select(cfg, "loss.gamma", default=0.0)), int(
        OmegaConf.select(cfg, "datamodule.fold", default=0)
    )


def plot_sweep_curves(sweep_dir: Path, fold: int | None = None) -> Path | None:
    """Fig. 2: test CE during training of one fold, one line per gamma, mean over repeats."""
    by_gamma: dict[float, list[Path]] = defaultdict(list)
    folds = set()
    for jd in sorted(p for p in Path(sweep_dir).iterdir() if p.is_dir()):
        setting = _job_setting(jd)
        if setting is None or not (jd / CURVE_FILE).is_file():
            continue
        folds.add(setting[1])
        by_gamma[setting[0]].append((setting[1], jd / CURVE_FILE))
    if not by_gamma:
        return None
    fold = min(folds) if fold is None else fold
    curves = {
        f"gamma={g:g}": [path for f, path in items if f == fold]
        for g, items in sorted(by_gamma.items(), key=lambda kv: -kv[0])
    }
    return plot_loss_curves(curves, Path(sweep_dir) / FIG2, window=5)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Pooled sleep_tsr metrics and Fig. 2 of a sweep")
    parser.add_argument("sweep_dir", type=Path)
    args = parser.parse_args(argv)
    groups: dict[tuple[float, int], list[Path]] = defaultdict(list)
    for jd in sorted(p for p in args.sweep_dir.iterdir() if p.is_dir()):
        cfg_file = jd / ".hydra" / "config.yaml"
        if cfg_file.is_file() and (jd / PREDICTIONS_FILE).is_file():
            cfg = OmegaConf.load(cfg_file)
            groups[(float(cfg.loss.gamma), int(cfg.seed))].append(jd)
    print("| gamma | seed | folds | acc | kappa | MF1 | sens | spec | W | N1 | N2 | N3 | REM |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (gamma, seed), dirs in sorted(groups.items(), key=lambda kv: (-kv[0][0], kv[0][1])):
        m = pool(dirs)
        cells = [m[f"test/{k}"] for k in ("acc", "kappa", "f1_macro", "sens_macro", "spec_macro")]
        cells += [m[f"test/f1_{c}"] for c in ("W", "N1", "N2", "N3", "REM")]
        print(
            f"| {gamma:g} | {seed} | {len(dirs)} | " + " | ".join(f"{v:.3f}" for v in cells) + " |"
        )
    by_gamma: dict[float, list[Path]] = defaultdict(list)
    for (gamma, _), dirs in groups.items():
        by_gamma[gamma].extend(dirs)
    for gamma, dirs in sorted(by_gamma.items(), key=lambda kv: -kv[0]):
        cm = confusion(*pooled_predictions(dirs))
        path = args.sweep_dir / f"confusion_gamma={gamma:g}.csv"
        np.savetxt(path, cm, fmt="%d", delimiter=",", header=",".join(CLASSES))
        print(
            f"\npooled confusion, gamma={gamma:g}, all folds and repeats (rows true: W N1 N2 N3 REM)"
        )
        print(cm)
    fig = plot_sweep_curves(args.sweep_dir)
    if fig:
        print(f"Fig. 2: {fig}")


if __name__ == "__main__":
    main()
