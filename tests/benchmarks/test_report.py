"""docs/results.md and the README: every figure comes from the report, and the two agree."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmarks.paper_runs import RUNS
from benchmarks.records import read_section
from benchmarks.report import EARLIER, SECTIONS, earlier_passes, render_results, write

ROOT = Path(__file__).resolve().parents[2]


def _job(folder: Path, seed: int, metrics: dict, status: str = "ok") -> None:
    folder.mkdir(parents=True)
    record = {"status": status, "overrides": [f"seed={seed}"], "metrics": metrics}
    (folder / "metrics.json").write_text(json.dumps(record))


def test_results_rows_are_mean_std_over_finished_seeds_beside_the_reference(tmp_path):
    runs = tmp_path / "runs"
    for seed, acc in ((1, 0.5), (2, 0.7), (3, 0.6)):
        _job(runs / "deep_gmm" / str(seed), seed, {"test/acc": acc, "test/majority_acc": 0.1})
    _job(runs / "deep_gmm" / "4", 4, {"test/acc": 0.0}, status="failed")  # not averaged
    _job(runs / "sleep_tsr" / "0", 1, {"test/acc": 0.9, "test/kappa": 0.8, "test/f1_macro": 0.7})
    np.savez(runs / "sleep_tsr" / "0" / "predictions_test.npz", y_true=np.array([0, 0, 0, 2]))
    table = render_results(tmp_path, quick=False)
    gmm = next(line for line in table.splitlines() if "| deep_gmm |" in line)
    assert "| 1,2,3 |" in gmm and "acc 0.600 ± 0.100" in gmm
    assert "majority state: 0.100 ± 0.000" in gmm and "0.6266" in gmm
    sleep = next(line for line in table.splitlines() if "| sleep_tsr |" in line)
    assert "acc 0.900 (1 seed)" in sleep and "majority stage: 0.750 (1 seed)" in sleep
    assert "none finished" in next(line for line in table.splitlines() if "lowlight_gp" in line)


def test_rows_not_rerun_keep_their_earlier_lines(tmp_path):
    """``--names``: a pass that reruns one row leaves the others as the earlier pass wrote them."""
    earlier = render_results(tmp_path, quick=False).replace("none finished", "1,2,3 (earlier)")
    _job(tmp_path / "runs" / "deep_gmm" / "0", 1, {"test/acc": 0.5})
    table = render_results(tmp_path, quick=False, previous=earlier)
    lines = {line.split("|")[2].strip(): line for line in table.splitlines()[2:]}
    assert "acc 0.500 (1 seed)" in lines["deep_gmm"]
    assert "1,2,3 (earlier)" in lines["lowlight_gp"] and "1,2,3 (earlier)" in lines["sd_mae"]


def test_header_names_only_the_earlier_passes_whose_rows_are_kept():
    """A pass whose only rows were all rerun since has nothing left in the tables: not named."""
    header = (
        "Generated (full); the last pass ran benchmarks (only deep_gmm_speed; the others kept).\n"
        "Machine: 07:43 UTC.\n"
        f"{EARLIER} Generated; ran benchmarks (only deep_gmm_speed, sd_mae_speed; kept). 07:12\n"
        f"{EARLIER} Generated (full); the result rows are 18 jobs. 05:11"
    )
    kept = earlier_passes(header, {"deep_gmm_speed"})
    assert [p[-5:] for p in kept] == ["07:12", "05:11"]
    assert [p[-5:] for p in earlier_passes(header, {"deep_gmm_speed", "sd_mae_speed"})] == ["05:11"]


def test_write_copies_the_blocks_into_the_readme(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:start -->\nold\n<!-- results:end -->\nend\n")
    out = tmp_path / "results.md"
    write(out, readme, tmp_path, quick=False, header="Machine: test")
    assert read_section(readme.read_text(), "results") == read_section(out.read_text(), "results")
    assert readme.read_text().startswith("intro") and readme.read_text().endswith("end\n")


def test_readme_figures_match_docs_results():
    """The README's figure tables are the report's, never edited by hand."""
    results = (ROOT / "docs" / "results.md").read_text()
    readme = (ROOT / "README.md").read_text()
    for name in ("report-header", *SECTIONS, "gpu-check"):
        block = read_section(readme, name)
        assert block, f"README block {name!r} is missing or empty"
        assert block == read_section(results, name), f"README block {name!r} was edited"


def test_an_empty_block_is_read_and_filled(tmp_path):
    """The README ships its blocks empty-able: an empty block must still be found and filled."""
    readme = tmp_path / "README.md"
    readme.write_text("a\n<!-- results:start -->\n<!-- results:end -->\nb\n")
    assert read_section(readme.read_text(), "results") == ""
    write(tmp_path / "results.md", readme, tmp_path, quick=False, header="Machine: test")
    assert "| paper | run |" in read_section(readme.read_text(), "results")


def test_every_paper_has_a_result_row():
    assert {r.paper for r in RUNS} == {"sleep_tsr", "deep_gmm", "sd_mae", "frailty", "lowlight_gp"}
