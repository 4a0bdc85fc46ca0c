"""Kill a run with SIGKILL, resume it with ``resume=<dir>``: every final metric as uninterrupted.

Each case trains a paper preset on a tiny budget three times in subprocesses: straight through,
then killed by the runner's test hook (``RUNNER_TEST_SIGKILL_AT_STEP``: the process SIGKILLs
itself after that training step, no cleanup, like a crash or a scheduler's kill), then resumed
from the job directory. ``metrics.json`` of the resumed job must equal the straight one's
exactly (paths aside). The kill lands after a ``last.ckpt`` written in the middle of an epoch
(``+callbacks.last.every_n_train_steps``) unless the case says ``boundary``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from experiments.runner.resume import KILL_ENV
from tests.experiments.test_deep_gmm import TINY as DEEP_GMM_TINY
from tests.experiments.test_frailty_e2e import TINY as FRAILTY_TINY
from tests.experiments.test_lowlight_gp_e2e import TINY as LOWLIGHT_TINY
from tests.experiments.test_sd_mae_e2e import TINY as SD_MAE_TINY
from tests.experiments.test_sleep_tsr_experiment import TINY as SLEEP_TINY
from tests.helpers import ROOT, _env

PATH_KEYS = ("best_checkpoint", "encoder_ckpt", "pretrain_checkpoint")

EXAMPLE = ["+experiment=example", "trainer.max_epochs=3", "logger=csv", "print_config=false"]
# 20 steps per epoch: the mid-epoch kill at step 52 resumes from the checkpoint at step 49
# (epoch 2, batch 9 of 20: partial epoch sums are restored); the boundary kill at step 41
# resumes from the end of epoch 1 (step 40).
EVERY_7 = "+callbacks.last.every_n_train_steps=7"
FRAILTY = [*FRAILTY_TINY, "trainer.max_epochs=3", "model.dropout=0.3"]  # 9 steps per epoch
SLEEP = [*SLEEP_TINY, "trainer.max_steps=10", "trainer.val_check_interval=3"]
DEEP_GMM = ["+experiment=deep_gmm", *DEEP_GMM_TINY, "trainer.max_epochs=2"]
SD_MAE = [*SD_MAE_TINY, "pipeline.pretrain_epochs=2", "pipeline.probe_epochs=2"]
LOWLIGHT = [*LOWLIGHT_TINY, "trainer.max_epochs=2", "lowlight.reference_cache=false"]


def _run(
    args: list[str], data_dir: Path, kill_at: str | None = None
) -> subprocess.CompletedProcess:
    env = _env(data_dir)
    env.pop(KILL_ENV, None)
    if kill_at is not None:
        env[KILL_ENV] = kill_at
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args, "trainer.accelerator=cpu"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )


def _metrics(run_dir: Path) -> dict:
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "ok", record.get("error")
    return {
        k: v
        for k, v in record["metrics"].items()
        if k not in PATH_KEYS and not k.split("/")[-1].startswith("time")  # wall-clock timings
    }


def check_kill_and_resume(
    tmp_path: Path, overrides: list[str], kill_at: str, ckpt: str = "checkpoints/last.ckpt"
) -> dict:
    """Straight run vs SIGKILLed + resumed run of ``overrides``: all metrics equal exactly."""
    data = tmp_path / "data"
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    proc = _run([*overrides, f"hydra.run.dir={straight}"], data)
    assert proc.returncode == 0, proc.stderr[-4000:]
    proc = _run([*overrides, f"hydra.run.dir={broken}"], data, kill_at=kill_at)
    assert proc.returncode == -9, (proc.returncode, proc.stderr[-4000:])  # died by SIGKILL
    if (broken / "metrics.json").exists():  # no chance to write a final record
        assert json.loads((broken / "metrics.json").read_text())["status"] != "ok"
    assert (broken / ckpt).exists(), sorted(p.name for p in broken.rglob("*.ckpt"))
    proc = _run([*overrides, f"resume={broken}"], data)
    assert proc.returncode == 0, proc.stderr[-4000:]
    log = proc.stdout + proc.stderr
    assert "dataloader is not resumable" not in log and "cannot skip" not in log
    a, b = _metrics(straight), _metrics(broken)
    assert a.keys() == b.keys()
    differ = {k: (a[k], b[k]) for k in a if a[k] != b[k]}
    assert not differ, differ
    return a


def test_example_killed_mid_epoch_resumes_exactly(tmp_path):
    out = check_kill_and_resume(tmp_path, [*EXAMPLE, EVERY_7], kill_at="52")
    assert "val/acc_best" in out and "train/loss" in out
    # the best tracker is in the checkpoint and holds the real validations only (no sanity check)
    ckpt = torch.load(tmp_path / "straight/checkpoints/last.ckpt", weights_only=False)
    best = float(ckpt["exact_resume"]["best"]["val_acc_best"]["max_value"])
    rows = (tmp_path / "straight/csv/metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    step, acc = header.index("step"), header.index("val/acc")
    cells = [r.split(",") for r in rows[1:]]
    accs = [(int(c[step]), float(c[acc])) for c in cells if c[acc]]
    assert best == pytest.approx(max(a for s, a in accs if s < ckpt["global_step"]), abs=1e-7)
    assert out["val/acc_best"] == pytest.approx(max(a for _, a in accs), abs=1e-7)


@pytest.mark.slow
def test_example_killed_at_epoch_boundary_resumes_exactly(tmp_path):
    check_kill_and_resume(tmp_path, EXAMPLE, kill_at="41")


@pytest.mark.slow
def test_frailty_killed_mid_epoch_resumes_exactly(tmp_path):
    # kill in epoch 2 at step 23; the last checkpoint is step 20 (epoch 2, batch 2 of 9)
    out = check_kill_and_resume(
        tmp_path, [*FRAILTY, "+callbacks.last.every_n_train_steps=4"], kill_at="23"
    )
    assert "val/acc_best" in out


@pytest.mark.slow
def test_sleep_tsr_killed_mid_epoch_resumes_exactly(tmp_path):
    # validation (and last.ckpt) every 3 steps; 6-8 steps per epoch: killed at 10 -> resumes from 9
    check_kill_and_resume(tmp_path, SLEEP, kill_at="10")


@pytest.mark.slow
def test_deep_gmm_killed_mid_epoch_resumes_exactly(tmp_path):
    check_kill_and_resume(
        tmp_path, [*DEEP_GMM, "+callbacks.last.every_n_train_steps=2"], kill_at="7"
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kill_at", "ckpt"),
    [
        # 3 steps per epoch in every stage, a last.ckpt at step 4 only (epoch 1, batch 1): each
        # kill lands after a mid-epoch checkpoint; pre-training resumes from its own, the probe
        # and the fine-tune rerun from their seeded start
        ("pretrain:5", "checkpoints/pretrain/last.ckpt"),
        ("probe:5", "checkpoints/probe/last.ckpt"),
        ("finetune0:2", "checkpoints/pretrain/last.ckpt"),
    ],
)
def test_sd_mae_killed_in_any_stage_resumes_exactly(tmp_path, kill_at, ckpt):
    check_kill_and_resume(
        tmp_path, [*SD_MAE, "+callbacks.last.every_n_train_steps=4"], kill_at, ckpt
    )


@pytest.mark.slow
def test_lowlight_gp_killed_mid_epoch_resumes_exactly(tmp_path):
    check_kill_and_resume(
        tmp_path, [*LOWLIGHT, "+callbacks.last.every_n_train_steps=1"], kill_at="4"
    )


def test_logger_choice_does_not_change_any_number(tmp_path):
    """csv alone vs the default csv + wandb offline: the same numbers, all of them."""
    data = tmp_path / "data"
    args = [a for a in FRAILTY if a != "logger=csv"]
    runs = {}
    for name, extra in (("csv", ["logger=csv"]), ("default", [])):
        run = tmp_path / name
        proc = _run([*args, *extra, f"hydra.run.dir={run}"], data)
        assert proc.returncode == 0, proc.stderr[-4000:]
        runs[name] = _metrics(run)
    assert (tmp_path / "default" / "wandb").is_dir()  # wandb really ran
    assert runs["csv"] == runs["default"]
