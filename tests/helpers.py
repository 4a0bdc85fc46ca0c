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


def compose_config(overrides: list[str], tmp_path: Path):
    """The config ``python run.py *overrides`` runs with, composed in process (no start-up
    cost): datasets under ``tmp_path/data``, the job directory ``tmp_path/run``."""
    from hydra import compose, initialize_config_dir

    import experiments.runner  # noqa: F401  (registers the runner's resolvers)

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", [*overrides, f"paths.data_dir={tmp_path / 'data'}"])
    cfg.paths.output_dir = str(tmp_path / "run")
    return cfg


def config_error_in_process(overrides: list[str], tmp_path: Path, node: str = "module") -> str:
    """The ``ConfigError`` that building ``node`` of the composed config raises, as its message.

    The same check ``python run.py *overrides`` fails on with exit 2 (found in Hydra's
    InstantiationException by the CLI's own ``find_cause``), without the interpreter start-up and
    the imports of a subprocess (~12 s on the CI machine): one subprocess test per paper keeps
    the exit-code contract, the other messages are checked here."""
    from hydra.utils import instantiate

    from core.checks import ConfigError
    from experiments.runner.cli import find_cause

    cfg = compose_config(overrides, tmp_path)
    try:
        instantiate(cfg[node])
    except Exception as err:
        if (cause := find_cause(err, ConfigError)) is None:
            raise
        return str(cause)
    raise AssertionError(f"building {node} with {overrides} raised no ConfigError")


def fit_test_in_process(cfg, module, datamodule, ckpt: Path, max_epochs: int = 1) -> dict:
    """Fit and test ``module`` with a plain CPU Trainer, then save ``ckpt`` as the runner's
    checkpoints are (resolved run config and datamodule state inside); returns the test
    metrics."""
    import lightning as L
    import torch
    from omegaconf import OmegaConf

    from experiments.runner.callbacks import EmbedRunConfig

    keys = [k for k in cfg if k != "hydra"]
    resolved = OmegaConf.to_container(OmegaConf.masked_copy(cfg, keys), resolve=True)
    trainer = L.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[EmbedRunConfig(resolved)],
    )
    threads = torch.get_num_threads()  # module-scoped fixtures run before conftest's 1 thread
    torch.set_num_threads(1)
    try:
        trainer.fit(module, datamodule=datamodule)
        (metrics,) = trainer.test(module, datamodule=datamodule, verbose=False)
    finally:
        torch.set_num_threads(threads)
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(ckpt)
    return metrics


def predict_in_process(overrides: list[str], tmp_path: Path, name: str = "predict") -> dict:
    """``run.py pipeline=predict *overrides`` through the runner's loop, in process; returns
    its metrics (``DataError`` / ``ConfigError`` propagate)."""
    from experiments.runner.context import RunContext
    from experiments.runner.predict import predict

    cfg = compose_config(["pipeline=predict", *overrides], tmp_path / "no_training_data_needed")
    out = tmp_path / name
    out.mkdir(parents=True, exist_ok=True)
    return predict(RunContext(cfg, out, None, None, trainer_factory=lambda **_: None))
