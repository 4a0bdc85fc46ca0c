"""End to end through ``python run.py``, as a user runs it, on the embedded example data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import (
    ROOT,
    config_error_in_process,
    run_cli,
    run_cli_cases,
    run_experiment,
    run_sweep,
)
from tests.runner.wandb_records import offline_config, strings

FAST = ["+experiment=example", "trainer.max_epochs=2"]


def metrics_of(job_dir: Path) -> dict:
    return json.loads((job_dir / "metrics.json").read_text())


def test_single_run_writes_everything_a_job_needs(tmp_path):
    _, run_dir = run_experiment(FAST, tmp_path)
    record = metrics_of(run_dir)
    assert record["status"] == "ok"
    assert record["metrics"]["test/acc"] > 0.3  # 10 classes: chance is 0.1
    for rel in (
        ".hydra/config.yaml",
        ".hydra/overrides.yaml",
        "config_resolved.yaml",
        "checkpoints/last.ckpt",
        "csv/metrics.csv",
    ):
        assert (run_dir / rel).exists(), rel
    assert list((run_dir / "checkpoints").glob("best-*.ckpt"))
    # embedded data written once through the real reader's path
    assert (tmp_path / "data/embedded/digits/digits.csv").exists()
    # wandb offline run holding the logged metrics, resumable by the stored id
    run_id = (run_dir / "wandb_run_id.txt").read_text().strip()
    files = list((run_dir / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
    assert files, list((run_dir / "wandb").iterdir())
    blob = files[0].read_bytes()
    for key in (b"val/acc", b"test/acc", b"train/loss"):
        assert key in blob
    # its config: the resolved values (a dashboard groups by them), no object reprs
    config = offline_config(run_dir)
    assert config["module"]["optimizer"]["lr"] == 0.001
    assert config["trainer"]["max_epochs"] == 2 and config["seed"] == 42
    assert config["datamodule"]["batch_size"] == 64 and config["model"]["hidden"] == [128, 64]
    assert not [s for s in strings(config) if " object at 0x" in s or "functools.partial" in s]
    assert "net" not in config  # Lightning's hparams (the nn.Module) are not logged on top

    # train=false evaluates exactly that run's best checkpoint: the same test metrics
    best = record["metrics"]["best_checkpoint"]
    evals = [
        ["+experiment=example", "train=false", f"ckpt_path={run_dir}", "logger=csv"],
        ["+experiment=example", "train=false", f"ckpt_path={best}", "logger=csv"],
        ["+experiment=example", "train=false", f"ckpt_path={best}", "model.hidden=[32]"],
    ]
    results = run_cli_cases(
        [[*argv, f"hydra.run.dir={tmp_path / f'eval{i}'}"] for i, argv in enumerate(evals)],
        data_dir=tmp_path / "data",
    )
    for i in (0, 1):
        assert results[i]["code"] == 0, results[i]["stderr"][-3000:]
        evaluated = metrics_of(tmp_path / f"eval{i}")["metrics"]
        assert evaluated["evaluated_checkpoint"] == best
        for key in ("test/acc", "test/loss"):
            assert evaluated[key] == pytest.approx(record["metrics"][key], abs=1e-6), key
        assert "val/acc" not in evaluated  # nothing was trained
    assert "(the best checkpoint of run directory" in (tmp_path / "eval0" / "run.log").read_text()
    assert results[2]["code"] == 2
    assert (
        f"Config error: ckpt_path: got '{best}': its weights do not fit the model"
        in (results[2]["stderr"])
    )


@pytest.mark.slow  # CI time (~30-75 s); run with -m slow
def test_sweep_2x2_with_a_failing_job_writes_summary_and_plot(tmp_path):
    # lr=-1 makes Adam raise for two of the four jobs: they must become rows, not a crash
    sweep_args = [*FAST, "module.optimizer.lr=0.01,-1", "seed=1,2", "logger=csv"]
    proc, sweep = run_sweep(sweep_args, tmp_path, check=False)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert f"2 of 4 jobs failed: see {sweep / 'summary.md'}" in proc.stderr
    jobs = pd.read_csv(sweep / "summary.csv")
    assert len(jobs) == 4
    assert sorted(jobs["status"]) == ["failed", "failed", "ok", "ok"]
    assert jobs.loc[jobs.status == "failed", "error"].str.contains("Invalid learning rate").all()
    groups = pd.read_csv(sweep / "summary_groups.csv").set_index("module.optimizer.lr")
    assert groups.loc[0.01, "jobs_ok"] == 2 and groups.loc[-1.0, "jobs_ok"] == 0
    assert groups.loc[0.01, "test/acc_n"] == 2 and groups.loc[0.01, "test/acc_std"] > 0
    md = (sweep / "summary.md").read_text()
    assert "mean ± std over seed" in md and "Invalid learning rate" in md
    assert (sweep / "plot_module.optimizer.lr.png").stat().st_size > 1000
    # rebuilt later from the directory alone, with the same numbers
    (sweep / "summary.md").unlink()
    out = subprocess.run(
        [sys.executable, "-m", "experiments.runner.report", str(sweep)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert (sweep / "summary.md").read_text() == md
    assert out.strip() == md.strip()
    # the same sweep again into its directory with ckpt_path=last: finished jobs are skipped,
    # the failed ones run again (and fail again), the summary still has all four rows
    before = {jd.name: metrics_of(jd) for jd in sweep.iterdir() if jd.name.isdigit()}
    assert all(len(rec["config_hash"]) == 16 for rec in before.values())
    run_sweep([*sweep_args, "ckpt_path=last"], tmp_path, check=False)
    for name, old in before.items():
        new = metrics_of(sweep / name)
        if old["status"] == "ok":
            assert new == old, name  # untouched: not re-run
        else:
            assert new["status"] == "failed" and new["started"] >= old["started"]
    assert len(pd.read_csv(sweep / "summary.csv")) == 4
    # rerun with other settings: no job is skipped or resumed under the new labels; each stops
    # naming the keys that differ, and the finished results stay in the file
    proc, _ = run_sweep(
        [*sweep_args, "ckpt_path=last", "trainer.max_epochs=3"], tmp_path, check=False
    )
    assert proc.returncode == 1 and "4 of 4 jobs failed" in proc.stderr
    jobs = pd.read_csv(sweep / "summary.csv")
    assert (jobs["status"] == "config_error").all()
    assert jobs["error"].str.startswith("trainer.max_epochs: differ from the ").all()
    assert jobs["error"].str.contains("trainer.max_epochs: 2 -> 3", regex=False).all()
    assert "trainer.max_epochs: differ from the finished run" in (sweep / "summary.md").read_text()
    for name, old in before.items():
        if old["status"] == "ok":
            assert metrics_of(sweep / name)["previous"] == old
    # the original settings again: finished jobs match, are skipped and their record restored
    run_sweep([*sweep_args, "ckpt_path=last"], tmp_path, check=False)
    for name, old in before.items():
        if old["status"] == "ok":
            assert metrics_of(sweep / name) == old, name


def test_plain_multirun_and_run_write_under_the_launch_directory(tmp_path):
    """The README's commands as typed: no hydra.run.dir / hydra.sweep.dir, outputs under ./outputs."""
    env_free = ("RUNNER_LOG_DIR", "RUNNER_DATA_DIR")
    proc = run_cli(
        ["-m", *FAST, "trainer.max_epochs=1", "seed=1,2", "logger=csv"],
        cwd=tmp_path,
        unset=env_free,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep,) = (tmp_path / "outputs" / "example" / "multiruns").iterdir()
    assert len(pd.read_csv(sweep / "summary.csv")) == 2
    assert (tmp_path / "data").is_dir()  # the embedded data went under the launch dir too
    proc = run_cli([*FAST, "trainer.max_epochs=1", "logger=csv"], cwd=tmp_path, unset=env_free)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = (tmp_path / "outputs" / "example" / "runs").iterdir()
    assert metrics_of(run)["status"] == "ok"


@pytest.mark.slow  # CI time (~30-75 s); run with -m slow
def test_resume_after_interruption_matches_uninterrupted_run(tmp_path):
    common = ["+experiment=example", "trainer.max_epochs=4", "logger=csv", "seed=7"]
    _, straight = run_experiment(common, tmp_path / "a")
    crash = [
        "+callbacks.crash._target_=experiments.runner.callbacks.FailAtEpoch",
        "+callbacks.crash.epoch=2",
    ]
    proc, broken = run_experiment([*common, *crash], tmp_path / "b", check=False)
    assert proc.returncode != 0
    assert metrics_of(broken)["status"] == "failed"
    assert (broken / "checkpoints/last.ckpt").exists()
    # resume=<run dir>: same directory, its last.ckpt and its wandb run id
    proc = run_cli([*common, f"resume={broken}"], data_dir=tmp_path / "b" / "data")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = metrics_of(broken)
    assert record["status"] == "ok"
    assert "Restoring states from the checkpoint" in proc.stdout + proc.stderr
    a, b = metrics_of(straight)["metrics"], record["metrics"]
    for key in ("test/acc", "test/loss", "val/acc_best"):
        assert a[key] == pytest.approx(b[key], abs=1e-6), key


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            "datamodule.val_fraction=-0.2",
            "datamodule.val_fraction: got -0.2; allowed values: (0, 1)",
        ),
        (
            "datamodule.data_dir=/nonexistent/digits",
            "data directory '/nonexistent/digits' does not exist",
        ),
    ],
)
def test_bad_config_fails_before_reading_data(tmp_path, override, expected):
    proc, _ = run_experiment(["+experiment=example", override], tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert expected in proc.stderr
    assert not (tmp_path / "data").exists()  # nothing was read or generated


def test_bad_module_option_names_the_key_and_the_range(tmp_path):
    message = config_error_in_process(
        ["+experiment=example", "module.label_smoothing=1.5"], tmp_path
    )
    assert "module.label_smoothing: got 1.5; allowed values: [0, 1)" in message


def test_unknown_experiment_lists_the_available_ones(tmp_path):
    proc = run_cli(["+experiment=does_not_exist"], data_dir=tmp_path)
    assert proc.returncode != 0
    assert "Could not find 'experiment/does_not_exist'" in proc.stderr
    assert "example" in proc.stderr  # Hydra lists the available options


@pytest.mark.slow  # CI time (~30-75 s); run with -m slow
def test_joblib_launcher_runs_two_jobs_in_parallel(tmp_path):
    _, sweep = run_sweep(
        [*FAST, "seed=1,2", "logger=csv", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
        tmp_path,
    )
    jobs = pd.read_csv(sweep / "summary.csv")
    assert list(jobs["status"]) == ["ok", "ok"]


@pytest.mark.slow  # CI time (~30-75 s); run with -m slow
def test_ddp_on_cpu_with_two_processes(tmp_path):
    _, run_dir = run_experiment([*FAST, "trainer=ddp", "trainer.devices=2", "logger=csv"], tmp_path)
    record = metrics_of(run_dir)
    assert record["status"] == "ok" and record["metrics"]["test/acc"] > 0.2
    assert (run_dir / "train_ddp_process_1.log").exists()  # the second rank really ran


def test_load_run_gives_back_module_with_best_weights(tmp_path):
    import torch

    from experiments.runner.load import load_run

    _, run_dir = run_experiment([*FAST, "logger=csv"], tmp_path)
    run = load_run(run_dir)
    assert run.metrics["test/acc"] > 0.3 and run.checkpoint.name.startswith("best-")
    best = torch.load(run.checkpoint, weights_only=False)["state_dict"]
    for key, value in run.module.state_dict().items():
        assert torch.equal(value, best[key]), key


@pytest.mark.slow  # CI time (~30 s for the three); run with -m slow
@pytest.mark.parametrize("launcher", ["submitit_slurm", "slurm", "joblib"])
def test_cluster_launchers_compose(tmp_path, launcher):
    proc = run_cli(
        [
            "+experiment=example",
            "trainer=ddp",
            "trainer.devices=4",
            "trainer.num_nodes=2",
            f"hydra/launcher={launcher}",
            "--cfg",
            "hydra",
        ],
        data_dir=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "_target_: hydra_plugins" in proc.stdout
    if launcher == "slurm":  # sized from the trainer: GPUs and tasks per node, nodes
        assert "gpus_per_node: ${trainer.devices}" in proc.stdout
        assert "tasks_per_node: ${trainer.devices}" in proc.stdout
        assert "nodes: ${oc.select:trainer.num_nodes,1}" in proc.stdout
