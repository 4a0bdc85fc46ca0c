"""Sweep report for sleep_tsr: metrics pooled over folds, and the test-loss curves (Fig. 2).

``pool(job_dirs)`` is the ``report.pool`` hook of ``conf/experiment/sleep_tsr.yaml``: the
runner calls it once per (gamma, seed) with that repeat's fold jobs; it concatenates their
saved test predictions into one confusion matrix, as the paper computes its metrics. As a
side effect it refreshes ``fig2_test_loss.png`` in the sweep directory, so Fig. 2 is rebuilt
whenever the report is. By hand:

    python -m experiments.sleep_tsr.report <sweep_dir>

prints (and writes ``table1.md``) one row per gamma in the paper's Table 1 order (1 -> 1e-5,
then 0), folds pooled per repeat and mean +- std over repeats, beside always-Wake and the
majority class; then the per-repeat rows and the pooled confusion matrices per gamma.
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
        f"gamma={g:g}": [path for f, path in by_gamma[g] if f == fold]
        for g in table1_order(list(by_gamma))
    }
    return plot_loss_curves(curves, Path(sweep_dir) / FIG2, window=5)


COLUMNS = ("acc", "kappa", "f1_macro", "sens_macro", "spec_macro") + tuple(
    f"f1_{c}" for c in CLASSES
)
HEADER = "| acc | kappa | MF1 | sens | spec | W | N1 | N2 | N3 | REM |"


def table1_order(gammas: list[float]) -> list[float]:
    """Gammas as the paper's Table 1 lists them: 1, 1e-1, ..., 1e-5, then 0 (SeqSleepNet)."""
    return sorted(gammas, key=lambda g: (g == 0, -g))


def trivial_references(y_true: np.ndarray) -> dict[str, dict[str, float]]:
    """Metrics of always predicting Wake and of always predicting the majority class."""
    counts = np.bincount(y_true, minlength=len(CLASSES))
    majority = int(counts.argmax())
    out = {"always Wake": staging_metrics(y_true, np.zeros_like(y_true))}
    if majority != 0:
        out[f"majority class ({CLASSES[majority]})"] = staging_metrics(
            y_true, np.full_like(y_true, majority)
        )
    return out


def table1(groups: dict[tuple[float, int], list[Path]]) -> list[str]:
    """Markdown rows: per gamma, folds pooled per repeat, mean +- std over repeats."""
    per_gamma: dict[float, list[dict[str, float]]] = defaultdict(list)
    folds: dict[float, set[int]] = defaultdict(set)
    for (gamma, _), dirs in groups.items():
        per_gamma[gamma].append(staging_metrics(*pooled_predictions(dirs)))
        folds[gamma] |= {(_job_setting(d) or (0.0, -1))[1] for d in dirs}
    lines = [
        "Folds pooled into one confusion matrix per repeat (seed); mean ± std over repeats.",
        "",
        "| gamma | repeats | folds " + HEADER,
        "|---|---|---" + "|---" * len(COLUMNS) + "|",
    ]
    for gamma in table1_order(list(per_gamma)):
        rows = per_gamma[gamma]
        cells = []
        for k in COLUMNS:
            v = np.array([r[k] for r in rows])
            cells.append(f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v[0]:.3f}")
        label = f"{gamma:g}" + (" (SeqSleepNet)" if gamma == 0 else "")
        lines.append(f"| {label} | {len(rows)} | {len(folds[gamma])} | " + " | ".join(cells) + " |")
    first = next(iter(groups.values()))  # the same test epochs for every gamma and seed
    y_true, _ = pooled_predictions(first)
    for name, m in trivial_references(y_true).items():
        cells = [f"{m[k]:.3f}" for k in COLUMNS]
        lines.append(f"| {name} | - | - | " + " | ".join(cells) + " |")
    return lines


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
    if not groups:
        raise SystemExit(f"{args.sweep_dir}: no finished jobs ({PREDICTIONS_FILE} missing)")
    summary = table1(groups)
    (args.sweep_dir / "table1.md").write_text("\n".join(summary) + "\n")
    print("\n".join(summary))
    print("\nper repeat (folds pooled):\n")
    print("| gamma | seed | folds " + HEADER)
    print("|---|---|---" + "|---" * len(COLUMNS) + "|")
    order = {g: i for i, g in enumerate(table1_order(list({g for g, _ in groups})))}
    for (gamma, seed), dirs in sorted(groups.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])):
        m = pool(dirs)
        cells = [m[f"test/{k}"] for k in COLUMNS]
        print(
            f"| {gamma:g} | {seed} | {len(dirs)} | " + " | ".join(f"{v:.3f}" for v in cells) + " |"
        )
    by_gamma: dict[float, list[Path]] = defaultdict(list)
    for (gamma, _), dirs in groups.items():
        by_gamma[gamma].extend(dirs)
    for gamma in table1_order(list(by_gamma)):
        cm = confusion(*pooled_predictions(by_gamma[gamma]))
        path = args.sweep_dir / f"confusion_gamma={gamma:g}.csv"
        np.savetxt(path, cm, fmt="%d", delimiter=",", header=",".join(CLASSES))
        print(
            f"\npooled confusion, gamma={gamma:g}, all folds and repeats (rows true: W N1 N2 N3 REM)"
        )
        print(cm)
    fig = plot_sweep_curves(args.sweep_dir)
    if fig:
        print(f"Fig. 2 (test CE over training steps, one line per gamma): {fig}")


if __name__ == "__main__":
    main()
