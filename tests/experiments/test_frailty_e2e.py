"""`python run.py +experiment=frailty` end to end on a tiny embedded cohort."""

import json

import pytest

from tests.helpers import run_cli, run_experiment, run_sweep

TINY = [
    "+experiment=frailty",
    "datamodule.embedded.n_participants=16",
    "datamodule.embedded.duration_s=8",
    "datamodule.batch_size=16",
    "model.conv_filters=[4]",
    "model.lstm_units=[6,5]",
    "trainer.max_epochs=2",
    "logger=csv",
    "print_config=false",
    "callbacks.progress_bar.refresh_rate=0",
]
CLASSES = ("robust", "pre_frail", "frail")


def _check_table3(run_dir):
    rec = json.loads((run_dir / "metrics.json").read_text())
    assert rec["status"] == "ok", rec.get("error")
    m = rec["metrics"]
    for key in ("test/acc", "test/balanced_acc", "test/f1_weighted", "test/kappa", "val/acc_best"):
        assert 0.0 <= m[key] <= 1.0 or key == "test/kappa"
    for c in CLASSES:
        assert {f"test/precision_{c}", f"test/recall_{c}", f"test/f1_{c}"} <= set(m)
    assert sum(m[f"test/support_{c}"] for c in CLASSES) == m["test/support_total"] > 0
    table = (run_dir / "table3.md").read_text()
    assert "| weighted avg |" in table and "| frail |" in table
    png = run_dir / "figures" / "confusion_matrix.png"
    assert png.read_bytes()[:4] == b"\x89PNG"
    cm = json.loads((run_dir / "test_confusion.json").read_text())["confusion"]
    assert sum(map(sum, cm)) == m["test/support_total"]
    return m


def test_subject_split_run_reports_table3(tmp_path):
    _, run_dir = run_experiment(TINY, tmp_path)
    m = _check_table3(run_dir)
    assert m["test/subjects"] == 3  # 16 participants, stratified: one per class in test
    assert 0.0 < m["test/majority_acc"] < 1.0  # the trivial reference beside test/acc


@pytest.mark.slow
def test_window_split_run_reports_table3(tmp_path):
    _, run_dir = run_experiment([*TINY, "datamodule.split=window"], tmp_path)
    _check_table3(run_dir)


def test_bad_config_fails_before_reading_data(tmp_path):
    proc = run_cli(
        [*TINY, "datamodule.split=random", f"hydra.run.dir={tmp_path / 'run'}"],
        data_dir=tmp_path / "data",
    )
    assert proc.returncode == 2
    assert "datamodule.split" in proc.stdout + proc.stderr
    assert not (tmp_path / "data" / "embedded").exists()


@pytest.mark.slow
def test_split_sweep_cpu_variant(tmp_path):
    overrides = [*TINY, "+sweep=frailty_splits_cpu", "datamodule.embedded.duration_s=8"]
    overrides += ["seed=1,2", "model.conv_filters=[4]", "trainer.max_epochs=1"]
    _, sweep_dir = run_sweep(overrides, tmp_path)
    assert (sweep_dir / "summary.csv").is_file()
    text = (sweep_dir / "summary.csv").read_text()
    assert "window" in text and "subject" in text and "test/majority_acc" in text
    summary = (sweep_dir / "summary.md").read_text()
    assert "(paper)" not in summary  # CPU-scale rows never sit beside the paper's 0.91
    job = json.loads(next(sweep_dir.glob("*/metrics.json")).read_text())
    assert job["task_name"] == "frailty_splits_cpu_scale_check"  # outputs/<this>/multiruns
    from experiments.frailty.report import collect

    rows = collect(sweep_dir)
    assert set(rows) == {"subject", "window"} and len(rows["window"]["test/acc"]) == 2


@pytest.mark.slow
def test_architecture_search_cpu_variant(tmp_path):
    overrides = [
        "+experiment=frailty",
        "+sweep=frailty_arch_cpu",
        "datamodule.embedded.duration_s=8",
        "trainer.max_epochs=1",
        "logger=csv",
        "print_config=false",
    ]
    _, sweep_dir = run_sweep(overrides, tmp_path)
    from experiments.frailty.search import best_job

    rows = best_job(sweep_dir)  # two Optuna RandomSampler trials, ranked on validation
    assert len(rows) == 2 and rows[0]["val/acc_best"] >= rows[1]["val/acc_best"]
    assert any("frailty_search.conv_layers=" in o for o in rows[0]["overrides"])
