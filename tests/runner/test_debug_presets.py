"""Every debug preset on every experiment preset; ``train=false`` then gives the test metrics again.

All slow: fast_dev_run of the six presets alone took more CPU than the fast set can spend
(embedded data generation, lowlight_gp's enhancement of every test image); the fast set keeps
the example's fast_dev_run (tests/runner/test_cli.py). ``debug=limit`` must validate and save a
best checkpoint on sleep_tsr, whose ``val_check_interval`` (40 steps) exceeds the limited epoch.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.helpers import run_experiment

PAPERS = ["example", "sleep_tsr", "deep_gmm", "sd_mae", "frailty", "lowlight_gp"]


def _record(job_dir: Path) -> dict:
    return json.loads((job_dir / "metrics.json").read_text())


def _test_metrics(metrics: dict) -> dict[str, float]:
    """Test metrics that are a function of the weights (timings and step counts are not)."""
    return {
        k: v
        for k, v in metrics.items()
        if k.startswith("test/")
        and "time" not in k
        and k != "test/train_steps"  # deep_gmm: the evaluating trainer's step, 0 in an eval
        and isinstance(v, float)
    }


@pytest.mark.slow  # the six together cost minutes of CPU (embedded data generation included)
@pytest.mark.parametrize("paper", PAPERS)
def test_fast_dev_run(tmp_path, paper):
    _, run_dir = run_experiment([f"+experiment={paper}", "debug=fast_dev_run"], tmp_path)
    record = _record(run_dir)
    assert record["status"] == "ok", paper
    assert _test_metrics(record["metrics"]), (paper, sorted(record["metrics"]))


@pytest.mark.slow
@pytest.mark.parametrize("paper", PAPERS)
def test_limit_validates_checkpoints_and_evaluates_again(tmp_path, paper):
    common = [f"+experiment={paper}", "debug=limit", "logger=csv"]
    _, run_dir = run_experiment(common, tmp_path)
    trained = _record(run_dir)["metrics"]
    assert any(k.startswith("val/") for k in trained) or paper == "sd_mae", sorted(trained)
    if paper != "sd_mae":  # sd_mae keeps one best checkpoint per classifier stage
        assert list(run_dir.glob("checkpoints/best-*.ckpt")) or paper == "lowlight_gp"
    if paper == "sleep_tsr":  # validated although val_check_interval 40 > 10 limited batches
        assert "val/acc" in trained and list(run_dir.glob("checkpoints/best-*.ckpt"))

    proc, eval_dir = run_experiment(
        [*common, "train=false", f"ckpt_path={run_dir}"], tmp_path / "eval"
    )
    evaluated = _record(eval_dir)["metrics"]
    expected = _test_metrics(trained)
    assert expected
    for key, value in expected.items():
        got = evaluated[key]
        assert (math.isnan(value) and math.isnan(got)) or got == pytest.approx(
            value, rel=1e-5, abs=1e-6
        ), key


@pytest.mark.slow
@pytest.mark.parametrize("paper", PAPERS)
def test_overfit(tmp_path, paper):
    _, run_dir = run_experiment([f"+experiment={paper}", "debug=overfit", "logger=csv"], tmp_path)
    assert _record(run_dir)["status"] == "ok"
