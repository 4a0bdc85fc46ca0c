"""The sweep report: job rows, mean +- std per setting, failed rows, paper columns, plots."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from experiments.runner.report import build_report, main, parse_overrides, write_report


def make_job(
    sweep: Path, num: int, overrides: list[str], metrics=None, status="ok", error=None, report=None
) -> Path:
    jd = sweep / str(num)
    (jd / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(overrides), jd / ".hydra" / "overrides.yaml")
    OmegaConf.save(OmegaConf.create({"report": report or {}}), jd / ".hydra" / "config.yaml")
    if status != "missing":
        record = {"status": status, "metrics": metrics or {}, "error": error}
        (jd / "metrics.json").write_text(json.dumps(record))
    return jd


def pool_mean_of_counts(job_dirs: list[Path]) -> dict[str, float]:
    """Pooled accuracy: total correct / total count over the given jobs."""
    correct = total = 0
    for jd in job_dirs:
        rec = json.loads((jd / "metrics.json").read_text())["metrics"]
        correct += rec["correct"]
        total += rec["count"]
    return {"test/pooled_acc": correct / total}


def test_parse_overrides_casts_numbers():
    assert parse_overrides(["+experiment=x", "loss.gamma=1e-3", "seed=2", "m=[1,2]"]) == {
        "experiment": "x",
        "loss.gamma": 0.001,
        "seed": 2,
        "m": "[1,2]",
    }


def test_groups_mean_std_over_seeds_and_failed_row(tmp_path):
    report = {
        "main_metric": "test/acc",
        "repeat_keys": ["seed"],
        "paper": [{"match": {"lr": 0.1}, "metrics": {"test/acc": 0.9}}],
    }
    accs = {(0.1, 1): 0.8, (0.1, 2): 0.9, (0.01, 1): 0.5, (0.01, 2): None}
    for num, ((lr, seed), acc) in enumerate(accs.items()):
        ov = ["+experiment=example", f"lr={lr}", f"seed={seed}"]
        if acc is None:
            make_job(
                tmp_path,
                num,
                ov,
                status="failed",
                error="Traceback...\nValueError: bad lr",
                report=report,
            )
        else:
            make_job(tmp_path, num, ov, {"test/acc": acc}, report=report)
    make_job(
        tmp_path, 4, ["+experiment=example", "lr=0.001", "seed=1"], status="missing", report=report
    )

    rep = build_report(tmp_path)
    assert rep.group_keys == ["lr"]
    g = rep.groups.set_index("lr")
    assert math.isclose(g.loc[0.1, "test/acc_mean"], 0.85)
    assert math.isclose(g.loc[0.1, "test/acc_std"], pd.Series([0.8, 0.9]).std())
    assert g.loc[0.1, "test/acc_paper"] == 0.9
    assert g.loc[0.01, "jobs_ok"] == 1 and g.loc[0.01, "jobs"] == 2
    assert g.loc[0.001, "jobs_ok"] == 0  # every job failed: still a row

    write_report(tmp_path)
    jobs = pd.read_csv(tmp_path / "summary.csv")
    assert len(jobs) == 5
    assert set(jobs["status"]) == {"ok", "failed", "missing"}
    assert "ValueError: bad lr" in set(jobs["error"].dropna())
    md = (tmp_path / "summary.md").read_text()
    assert "test/acc (ours)" in md and "test/acc (paper)" in md
    assert "0.8500 ± 0.0707" in md and "| 0.9000 |" in md
    assert (tmp_path / "plot_lr.png").stat().st_size > 1000


def test_pool_function_then_mean_over_repeats(tmp_path):
    report = {
        "repeat_keys": ["seed"],
        "pool_keys": ["fold"],
        "pool": {"_target_": "tests.runner.test_report.pool_mean_of_counts", "_partial_": True},
    }
    num = 0
    for seed, folds in {1: [(8, 10), (1, 10)], 2: [(10, 10), (0, 30)]}.items():
        for fold, (correct, count) in enumerate(folds):
            make_job(
                tmp_path,
                num,
                [f"fold={fold}", f"seed={seed}"],
                {"correct": correct, "count": count},
                report=report,
            )
            num += 1
    rep = build_report(tmp_path)
    assert rep.group_keys == []
    row = rep.groups.iloc[0]
    # seed 1: 9/20 = 0.45, seed 2: 10/40 = 0.25 -> mean 0.35 over the 2 repeats
    assert math.isclose(row["test/pooled_acc_mean"], 0.35)
    assert row["test/pooled_acc_n"] == 2


def test_cli_rebuilds_report(tmp_path, capsys):
    make_job(tmp_path, 0, ["seed=1"], {"test/acc": 0.7})
    make_job(tmp_path, 1, ["seed=2"], {"test/acc": 0.9})
    main([str(tmp_path)])
    assert "0.8000 ± 0.1414" in capsys.readouterr().out
    assert (tmp_path / "summary.csv").exists()


def test_pooled_rows_in_descending_order_and_a_true_subtitle(tmp_path):
    """sleep_tsr's summary.md: gamma as Table 1 lists it (1 .. 1e-5, 0), folds pooled per seed."""
    report = {
        "repeat_keys": ["seed"],
        "pool_keys": ["fold"],
        "pool": {"_target_": "tests.runner.test_report.pool_mean_of_counts", "_partial_": True},
        "descending": ["loss.gamma"],
    }
    num = 0
    for gamma in ("0", "1e-4", "1", "1e-1"):
        for seed in (1, 2):
            for fold in (0, 1):
                ov = [f"loss.gamma={gamma}", f"fold={fold}", f"seed={seed}"]
                make_job(tmp_path, num, ov, {"correct": 5 + seed, "count": 10}, report=report)
                num += 1
    write_report(tmp_path)
    groups = pd.read_csv(tmp_path / "summary_groups.csv")
    assert list(groups["loss.gamma"]) == [1.0, 0.1, 1e-4, 0.0]
    assert list(groups["test/pooled_acc_n"]) == [2] * 4  # two repeats, not four fold values
    md = (tmp_path / "summary.md").read_text()
    assert (
        "Each row: the jobs of each seed pooled over fold by report.pool, then mean ± std over "
        "seed (n = number of seed values). Rows by loss.gamma descending." in md
    )
    assert "mean ± std over seed, fold" not in md
    table = [ln for ln in md.split("## Jobs")[0].splitlines() if ln.startswith("| ")]
    assert [ln.split(" | ")[0][2:] for ln in table[1:]] == ["1.0", "0.1", "0.0001", "0.0"]
