"""End to end through run.py on a tiny embedded Sleep-EDF: one run and a Table-1-shaped sweep."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from experiments.sleep_tsr.figures import (
    moving_average,
    plot_hypnogram,
    plot_loss_curves,
    read_curve,
)
from experiments.sleep_tsr.metrics import SequenceAggregator, staging_metrics
from experiments.sleep_tsr.report import main as report_main
from experiments.sleep_tsr.report import pool, pooled_predictions
from tests.helpers import run_experiment, run_sweep

TINY = [
    "+experiment=sleep_tsr",
    "logger=csv",
    "datamodule.embedded.n_subjects=4",
    "datamodule.embedded.nights=1",
    "datamodule.embedded.sleep_hours=0.3",
    "datamodule.embedded.wake_minutes=[3,5]",
    "datamodule.num_subjects=4",
    "datamodule.num_val_subjects=1",
    "datamodule.seq_len=5",
    "datamodule.batch_size=8",
    "trainer.max_steps=4",
    "trainer.val_check_interval=2",
    "trainer.enable_model_summary=false",
    "print_config=false",
]


def test_aggregator_sums_log_probs_over_windows():
    agg = SequenceAggregator([4], num_classes=2)
    lp = torch.log(torch.tensor([[[0.9, 0.1], [0.4, 0.6]], [[0.3, 0.7], [0.2, 0.8]]]))
    agg.add(lp, torch.tensor([0, 0]), torch.tensor([0, 1]))
    # epoch 1 is covered twice: log(.4)+log(.3) > log(.6)+log(.7)? no -> class 1
    assert agg.predictions()[0].tolist() == [0, 1, 1, -1]
    assert agg.counts[0].tolist() == [1, 2, 1, 0]


def test_staging_metrics_by_hand():
    y = np.array([0, 0, 1, 2, 3, 4, 4, 4])
    p = np.array([0, 1, 1, 2, 3, 4, 4, 0])
    m = staging_metrics(y, p)
    assert m["acc"] == pytest.approx(6 / 8)
    assert m["f1_N2"] == 1.0 and m["f1_W"] == pytest.approx(0.5)
    assert m["sens_macro"] == pytest.approx((0.5 + 1 + 1 + 1 + 2 / 3) / 5, rel=1e-5)
    assert 0 < m["kappa"] < 1


def test_figures(tmp_path):
    assert moving_average(np.array([1.0, 3.0, 5.0, 7.0]), 2).tolist() == [1.0, 2.0, 4.0, 6.0]
    y = np.array([0, 0, 1, 2, 3, 2, 4, 0])
    png = plot_hypnogram(y, y[::-1], tmp_path / "h.png", title="night")
    assert png.stat().st_size > 5000
    for g, vals in (("a", "2.0,1.5,1.2"), ("b", "2.1,1.9,1.8")):
        rows = ["step,test_ce"] + [f"{(i + 1) * 100},{v}" for i, v in enumerate(vals.split(","))]
        (tmp_path / f"{g}.csv").write_text("\n".join(rows) + "\n")
    steps, ce = read_curve(tmp_path / "a.csv")
    assert steps.tolist() == [100, 200, 300] and ce.tolist() == [2.0, 1.5, 1.2]
    fig = plot_loss_curves(
        {"gamma=1": [tmp_path / "a.csv"], "gamma=0": [tmp_path / "b.csv"]}, tmp_path / "f.png"
    )
    assert fig.stat().st_size > 5000


def _fake_job(root: Path, num: int, gamma: float, seed: int, fold: int, y_pred) -> None:
    jd = root / str(num)
    (jd / ".hydra").mkdir(parents=True)
    (jd / ".hydra" / "config.yaml").write_text(
        f"loss: {{gamma: {gamma}}}\nseed: {seed}\ndatamodule: {{fold: {fold}}}\n"
    )
    y_true = np.array([0, 0, 0, 2, 2, 2, 2, 3, 4, 1])
    np.savez(jd / "predictions_test.npz", y_true=y_true, y_pred=np.asarray(y_pred))
    (jd / "test_loss_curve.csv").write_text("step,test_ce\n10,1.5\n20,1.2\n")


def test_table1_lists_gamma_as_the_paper_with_pooled_folds_and_trivial_rows(tmp_path):
    good = [0, 0, 0, 2, 2, 2, 2, 3, 4, 1]
    num = 0
    for gamma in (0.0, 1e-4, 1.0):
        for seed in (1, 2):
            for fold in (0, 1):
                pred = list(good)
                pred[seed] = 2  # seed 2 makes a different mistake than seed 1
                _fake_job(tmp_path, num, gamma, seed, fold, pred)
                num += 1
    report_main([str(tmp_path)])
    text = (tmp_path / "table1.md").read_text()
    assert text.startswith("Folds pooled into one confusion matrix per repeat (seed)")
    rows = [line.split(" | ")[0].strip("| ") for line in text.splitlines() if line.startswith("|")]
    assert rows[2:] == ["1", "0.0001", "0 (SeqSleepNet)", "always Wake", "majority class (N2)"]
    gamma_row = next(line for line in text.splitlines() if line.startswith("| 1 |"))
    assert "| 2 | 2 | 0.900 ± 0.000 |" in gamma_row  # 2 repeats of 2 pooled folds, 9/10 right
    assert "| always Wake | - | - | 0.300 |" in text
    assert (tmp_path / "fig2_test_loss.png").is_file()


def test_single_run_trains_tests_and_saves_artefacts(tmp_path):
    proc, run_dir = run_experiment(TINY, tmp_path)
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "ok"
    for key in ("test/acc", "test/kappa", "test/f1_macro", "test/f1_N1", "val/acc_best"):
        assert key in record["metrics"], key
    with np.load(run_dir / "predictions_test.npz") as z:
        assert len(z["y_true"]) == len(z["y_pred"]) > 0 and (z["y_pred"] >= 0).all()
        assert z["confusion"].shape == (5, 5)
    assert (run_dir / "test_loss_curve.csv").read_text().count("\n") >= 2
    assert list((run_dir / "figures").glob("hypnogram_*.png"))
    assert (run_dir / "figures" / "test_loss_curve.png").is_file()


@pytest.mark.slow
def test_bad_fold_is_a_config_error(tmp_path):
    proc, _ = run_experiment([*TINY, "datamodule.fold=7"], tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "datamodule.fold" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_gamma_sweep_summary_has_table1_shape(tmp_path):
    proc, sweep = run_sweep(
        [*TINY, "loss.gamma=1e-4,0", "datamodule.fold=0,1", "seed=1,2"], tmp_path
    )
    summary = (sweep / "summary.md").read_text()
    groups = __import__("pandas").read_csv(sweep / "summary_groups.csv")
    assert sorted(groups["loss.gamma"].tolist()) == [0.0, 0.0001]
    for col in ("test/acc", "test/kappa", "test/f1_macro", "test/sens_macro", "test/spec_macro",
                "test/f1_W", "test/f1_N1", "test/f1_N2", "test/f1_N3", "test/f1_REM"):  # fmt: skip
        assert f"{col}_mean" in groups.columns and (groups[f"{col}_n"] == 2).all(), col
    assert "test/acc_paper" in groups.columns and groups["test/acc_paper"].notna().all()
    assert "test/acc (paper)" in summary
    assert (sweep / "fig2_test_loss.png").is_file()
    # pooling = one confusion matrix over the folds, not the mean of per-fold accuracies
    first = []
    for d in sweep.iterdir():
        if (d / "predictions_test.npz").is_file():
            cfg = OmegaConf.load(d / ".hydra" / "config.yaml")
            if cfg.loss.gamma == 0 and cfg.seed == 1:
                first.append(d)
    assert len(first) == 2
    pooled = pool(first)
    y_true, y_pred = pooled_predictions(first)
    assert len(y_true) == sum(len(np.load(d / "predictions_test.npz")["y_true"]) for d in first)
    assert pooled["test/acc"] == pytest.approx(float(np.mean(y_true == y_pred)), abs=1e-6)
    report_main([str(sweep)])
    cm = np.loadtxt(sweep / "confusion_gamma=0.csv", delimiter=",")
    assert cm.shape == (5, 5) and cm.sum() == 2 * len(y_true)  # both repeats pooled
