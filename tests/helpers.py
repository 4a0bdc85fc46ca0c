"""Run the CLI the way a user does, with outputs and data inside a test's tmp dir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _env(data_dir: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(ROOT),
        WANDB_SILENT="true",
        WANDB_MODE=env.get("WANDB_MODE", "offline"),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        HYDRA_FULL_ERROR="1",
    )
    if data_dir is not None:
        env["RUNNER_DATA_DIR"] = str(data_dir)
    return env


def run_cli(
    args: list[str],
    cwd: Path | None = None,
    data_dir: Path | None = None,
    timeout: int = 900,
    unset: tuple[str, ...] = (),
) -> subprocess.CompletedProcess:
    """``python run.py *args``; returns the finished process (stdout/stderr captured).

    ``unset`` names environment variables to remove (e.g. the output/data dir overrides).
    """
    env = _env(data_dir)
    for key in unset:
        env.pop(key, None)
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args],
        cwd=cwd or ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_experiment(
    overrides: list[str], tmp_path: Path, data_dir: Path | None = None, check: bool = True
) -> tuple[subprocess.CompletedProcess, Path]:
    """One run into ``tmp_path/run``; returns (process, run dir). Fails the test on error."""
    run_dir = tmp_path / "run"
    proc = run_cli(
        [*overrides, f"hydra.run.dir={run_dir}", "trainer.accelerator=cpu"],
        data_dir=data_dir or tmp_path / "data",
    )
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc, run_dir


def run_sweep(
    overrides: list[str], tmp_path: Path, data_dir: Path | None = None, check: bool = True
) -> tuple[subprocess.CompletedProcess, Path]:
    """A multirun into ``tmp_path/sweep``; returns (process, sweep dir)."""
    sweep_dir = tmp_path / "sweep"
    proc = run_cli(
        ["-m", *overrides, f"hydra.sweep.dir={sweep_dir}", "trainer.accelerator=cpu"],
        data_dir=data_dir or tmp_path / "data",
    )
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc, sweep_dir


def run_cli_cases(cases: list[list[str]], data_dir: Path, timeout: int = 900) -> list[dict]:
    """Several ``run.py`` command lines in one interpreter (``tests/runner/cli_driver.py``).

    Returns ``[{"argv", "code", "stderr"}, ...]``; each case goes through run.py's entry point,
    so exit codes and messages are those a user sees, at one import's cost for all of them.
    """
    import json

    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "runner" / "cli_driver.py"), json.dumps(cases)],
        cwd=ROOT,
        env=_env(data_dir),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("CASES:")]
    assert lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(lines[-1][len("CASES:") :])


def run_predict(
    experiment: str,
    run_dir: Path,
    inputs: Path,
    out: Path,
    tmp_path: Path,
    name: str = "predict",
    extra: tuple[str, ...] = (),
) -> subprocess.CompletedProcess:
    """``pipeline=predict`` of ``experiment`` with ``run_dir``'s checkpoint on ``inputs``
    (``extra``: more overrides, e.g. predictor options).

    The data dir points at an empty folder: predict must not need the training data.
    """
    return run_cli(
        [
            f"+experiment={experiment}",
            "pipeline=predict",
            f"ckpt_path={run_dir}",
            f"predict.input={inputs}",
            f"predict.output={out}",
            f"hydra.run.dir={tmp_path / name}",
            "logger=csv",
            "print_config=false",
            *extra,
        ],
        data_dir=tmp_path / "no_training_data_needed",
    )
