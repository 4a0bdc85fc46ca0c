"""The GPU check and the benchmark records: what a user with a GPU (or the report) relies on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from benchmarks.records import read_section, replace_section
from benchmarks.studies import STUDIES

ROOT = Path(__file__).resolve().parents[2]


def _grid_size(sweep: str) -> int:
    """Number of jobs of a sweep preset's Hydra grid (comma lists and range(a,b))."""
    params = yaml.safe_load((ROOT / "conf" / "sweep" / f"{sweep}.yaml").read_text())
    size = 1
    for value in params["hydra"]["sweeper"]["params"].values():
        value = str(value)
        if value.startswith("range("):
            lo, hi = (int(v) for v in value[6:-1].split(","))
            size *= hi - lo
        else:
            size *= len(value.split(","))
    return size


@pytest.mark.parametrize("paper", sorted(STUDIES))
def test_projected_study_has_the_sweep_presets_job_count(paper):
    study = STUDIES[paper]
    assert study.jobs == _grid_size(study.sweep)
    assert study.projected_hours(3.6) == pytest.approx(study.jobs * study.units_per_job / 1000)


def test_replace_section_swaps_only_its_block():
    text = "# R\n\n<!-- a:start -->\nold\n<!-- a:end -->\n\ntail\n"
    out = replace_section(text, "a", "new")
    assert read_section(out, "a") == "new" and out.endswith("tail\n")
    assert read_section(replace_section(out, "b", "x"), "b") == "x"


def test_gpu_check_dry_run_writes_its_block(tmp_path):
    """One step of each group on the CPU at smoke size: the script, its commands, the records
    and the rendering all work without a GPU (the whole dry run is in the slow test below)."""
    results = tmp_path / "results.md"
    results.write_text("# Results\n\nkept\n")
    steps = ["run_example", "cuda_frailty_train_step"]
    proc = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", "--dry-run", "--work", str(tmp_path / "w"),
         "--results", str(results), "--only", *steps],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    block = read_section(results.read_text(), "gpu-check")
    assert "kept" in results.read_text()
    for step in steps:
        assert f"| {step} | ok |" in block
    assert "`frailty_train_step`" in block
    record = json.loads((tmp_path / "w" / "records" / "cuda_frailty_train_step.json").read_text())
    assert record["machine"]["device"] == "cpu" and record["figures"]["ms_per_step"] > 0


@pytest.mark.slow
def test_gpu_check_full_dry_run(tmp_path):
    results = tmp_path / "results.md"
    proc = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", "--dry-run", "--work", str(tmp_path / "w"),
         "--results", str(results)],
        cwd=ROOT, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "failed" not in read_section(results.read_text(), "gpu-check")
