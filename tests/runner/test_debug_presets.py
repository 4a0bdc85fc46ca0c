"""Every debug preset on every experiment preset: exit 0, what the preset promises, metrics printed.

What each preset promises (README, "Running experiments"):

* ``fast_dev_run``: one batch of train/val/test through the whole pipeline, no wandb, test
  metrics (no checkpoint: Lightning writes none in a fast_dev_run);
* ``limit``: 3 short epochs that validate, a best checkpoint (``checkpoints/best-*.ckpt``, one per
  classifier stage for sd_mae) that ``train=false ckpt_path=<run dir>`` evaluates to the same test
  metrics;
* ``overfit``: training on one batch, validated every 10 epochs, so a best checkpoint too.

Fast (CI): the composed config of every pair, all ten experiment presets included (those that
need a real dataset cannot run here), and the three presets run end to end on the example, in
one interpreter. Slow: each preset run on each paper preset that runs on embedded data (a few
minutes each; ``python -m pytest tests/runner/test_debug_presets.py -m slow``).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from experiments.runner.schema import check_config
from experiments.runner.task import apply_debug
from tests.helpers import ROOT, run_cli_cases, run_experiment

DEBUG = sorted(p.stem for p in (ROOT / "conf" / "debug").glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
# experiment presets that run on the embedded data (the others need a real dataset); deep_gmm
# also with the DNN pre-training stage that initialises the DGMM (deep_gmm_paper's default)
RUNNABLE = {
    "example": ["+experiment=example"],
    "sleep_tsr": ["+experiment=sleep_tsr"],
    "deep_gmm": ["+experiment=deep_gmm"],
    "deep_gmm_init_auto": ["+experiment=deep_gmm", "module.init_ckpt=auto"],
    "sd_mae": ["+experiment=sd_mae"],
    "frailty": ["+experiment=frailty"],
    "lowlight_gp": ["+experiment=lowlight_gp"],
}
SD_MAE_STAGES = ("probe", "probe_random", "finetune0")


def test_the_presets_the_readme_lists_are_the_presets_there():
    assert DEBUG == ["fast_dev_run", "limit", "overfit"]
    readme = (ROOT / "README.md").read_text()
    for name in DEBUG:
        assert f"debug={name}" in readme, name


def _check_settings(cfg, debug: str) -> None:
    check_config(cfg)  # the typed checks a run starts with
    tr = cfg.trainer
    if debug == "fast_dev_run":
        assert tr.fast_dev_run is True and cfg.logger.wandb.mode == "disabled"
        return
    counts = ("overfit_batches",) if debug == "overfit" else (
        "limit_train_batches", "limit_val_batches", "limit_test_batches",
    )  # fmt: skip
    for key in counts:  # counts: a fraction of a small loader rounds to 0 batches
        assert isinstance(tr[key], int) and tr[key] >= 1, (key, tr[key])
    train_batches = tr.overfit_batches if debug == "overfit" else tr.limit_train_batches
    vci = tr.val_check_interval
    assert isinstance(vci, float) or vci <= train_batches, vci  # validates in the short epoch
    assert tr.check_val_every_n_epoch <= tr.max_epochs, tr.check_val_every_n_epoch


def test_every_debug_preset_composes_and_validates_within_its_short_epochs():
    """The settings that stopped lowlight_gp / sd_mae (a fraction of a 4-batch loader) and kept
    sleep_tsr from validating (val_check_interval 40 > 10 limited batches), checked on the
    composed config of every pair, the presets that need a real dataset included."""
    presets = {d: OmegaConf.load(ROOT / "conf" / "debug" / f"{d}.yaml") for d in DEBUG}
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):  # one compose each (CI)
        composed = {e: compose("config", [f"+experiment={e}"]) for e in EXPERIMENTS}
    for experiment, base in composed.items():
        for debug, preset in presets.items():
            cfg = base.copy()
            with open_dict(cfg):
                cfg.debug = preset  # what `debug=<name>` composes (# @package debug)
            apply_debug(cfg)  # as the runner does: over the experiment preset
            try:
                _check_settings(cfg, debug)
            except AssertionError as err:
                raise AssertionError(f"{experiment} + debug={debug}: {err}") from err


# ---- runs -------------------------------------------------------------------------------------
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


def _best_checkpoints(run_dir: Path, paper: str) -> list[Path]:
    ckpts = run_dir / "checkpoints"
    if paper == "sd_mae":  # one best checkpoint per classifier stage
        return [p for s in SD_MAE_STAGES for p in (ckpts / s).glob("best-*.ckpt")]
    return list(ckpts.glob("best-*.ckpt"))


def check_promise(run_dir: Path, paper: str, debug: str) -> dict:
    """The run ended ok, kept what ``debug`` promises and printed its final metrics."""
    record = _record(run_dir)
    assert record["status"] == "ok", record.get("error")
    metrics = record["metrics"]
    assert _test_metrics(metrics), sorted(metrics)
    log = (run_dir / "run.log").read_text()
    assert "final metrics (" in log
    some = sorted(_test_metrics(metrics))[0]
    assert f"  {some} " in log.split("final metrics (")[-1], some
    best = _best_checkpoints(run_dir, paper)
    if debug == "fast_dev_run":
        assert not (run_dir / "wandb").exists()
        assert not best  # Lightning writes no checkpoint in a fast_dev_run
    else:
        assert best, sorted(str(p) for p in run_dir.rglob("*.ckpt"))
        if paper == "sd_mae":
            assert len(best) == len(SD_MAE_STAGES)
    return metrics


def check_evaluated_again(trained: dict, evaluated: dict) -> None:
    expected = _test_metrics(trained)
    assert expected
    for key, value in expected.items():
        got = evaluated[key]
        assert (math.isnan(value) and math.isnan(got)) or got == pytest.approx(
            value, rel=1e-5, abs=1e-6
        ), key


def test_every_debug_preset_on_the_example(tmp_path):
    """The three presets, and the limit run evaluated again from its run directory, in one
    interpreter (CI time): exit 0, the promised checkpoint, printed metrics; overfit's loss falls."""
    cases = {d: ["+experiment=example", f"debug={d}", "logger=csv"] for d in DEBUG}
    argv = [[*a, f"hydra.run.dir={tmp_path / d}", "trainer.accelerator=cpu"] for d, a in cases.items()]  # fmt: skip
    argv.append(
        [*cases["limit"], "train=false", f"ckpt_path={tmp_path / 'limit'}",
         f"hydra.run.dir={tmp_path / 'eval'}", "trainer.accelerator=cpu"]
    )  # fmt: skip
    results = run_cli_cases(argv, data_dir=tmp_path / "data")
    for result in results:
        assert result["code"] == 0, (result["argv"], result["stderr"][-3000:])
    trained = {d: check_promise(tmp_path / d, "example", d) for d in DEBUG}
    check_evaluated_again(trained["limit"], _record(tmp_path / "eval")["metrics"])
    with open(next((tmp_path / "overfit" / "csv").rglob("metrics.csv"))) as fh:
        losses = [float(r["train/loss"]) for r in csv.DictReader(fh) if r.get("train/loss")]
    # one batch, 50 steps at Adam 1e-3: 2.30 -> 1.12 on the AMD EPYC dev machine
    assert len(losses) == 50 and losses[-1] < 0.75 * losses[0], losses[::10]


@pytest.mark.slow  # minutes of CPU per paper (embedded data generation included)
@pytest.mark.parametrize("debug", DEBUG)
@pytest.mark.parametrize("paper", [p for p in RUNNABLE if p != "example"])
def test_every_debug_preset_on_every_paper(tmp_path, paper, debug):
    common = [*RUNNABLE[paper], f"debug={debug}", "logger=csv"]
    _, run_dir = run_experiment(common, tmp_path)
    trained = check_promise(run_dir, paper.removesuffix("_init_auto"), debug)
    if paper == "sleep_tsr" and debug == "limit":  # val_check_interval 40 > 10 limited batches
        assert "val/acc" in trained
    if debug != "limit":
        return
    _, eval_dir = run_experiment(
        [*common, "train=false", f"ckpt_path={run_dir}"], tmp_path / "eval"
    )
    check_evaluated_again(trained, _record(eval_dir)["metrics"])
