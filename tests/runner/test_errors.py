"""The user-error contract through run.py's entry point: one line naming key, value and what is
allowed, exit code 2, before any data is read; a damaged data file: one line naming the file,
exit 2; a multirun with failed jobs: a row per failure and a non-zero exit.

All command lines run in one interpreter (``run_cli_cases``) so the imports are paid once.
"""

from __future__ import annotations

import pandas as pd

from tests.helpers import run_cli_cases

# (command line, text the one error line must contain)
COMPOSE_CASES = [
    (["+experiment=example", "trainer.max_epoch=3"], "trainer.max_epoch: unknown key"),
    ([], "experiment: no experiment chosen"),
    (["+experiment=exampel"], "experiment: got 'exampel'"),
    (["+experiment=example", "seed=abc"], "seed: got 'abc'; expected an integer"),
    (["+experiment=example", "trainer.max_epochs=abc"], "trainer.max_epochs: got 'abc'"),
    (["+experiment=example", "trainer.devices=0"], "trainer.devices: got 0; allowed values"),
    (["+experiment=example", "module.optimizer.lrr=1"], "module.optimizer.lrr: unknown key"),
    (["+experiment=sleep_tsr", "loss.gamma=-1"], "loss.gamma: got -1; allowed values: [0, inf]"),
    (["+experiment=frailty", "model.dropout=1.5"], "model.dropout: got 1.5; allowed values"),
    (["-m", "+experiment=example", "trainer.max_epoch=1,2"], "trainer.max_epoch: unknown key"),
    (["+experiment=example", "resume=/nonexistent/run"], "resume: got '/nonexistent/run'"),
    (
        ["+experiment=example", "train=false", "ckpt_path=/nonexistent/best.ckpt"],
        "ckpt_path: got '/nonexistent/best.ckpt': no such file or directory",
    ),
]


def _error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith(("Config error:", "Data error:"))]


def test_user_errors_are_one_line_exit_2_before_data_is_read(tmp_path):
    bad = tmp_path / "bad_digits"
    bad.mkdir()
    (bad / "digits.csv").write_text("px0,px1,label\n1,2,3\n4,5,6\n")  # 3 columns, not 65
    cases = [
        argv  # resume= picks the run directory itself: no hydra.run.dir
        if any(a.startswith("resume=") for a in argv)
        else [
            *argv,
            f"hydra.run.dir={tmp_path / f'run{i}'}",
            f"hydra.sweep.dir={tmp_path / f'sw{i}'}",
        ]
        for i, (argv, _) in enumerate(COMPOSE_CASES)
    ]
    data_case = ["+experiment=example", f"datamodule.data_dir={bad}", "logger=csv"]
    cases.append([*data_case, f"hydra.run.dir={tmp_path / 'data_run'}"])
    results = run_cli_cases(cases, data_dir=tmp_path / "data")

    for (argv, expected), res in zip(COMPOSE_CASES, results):
        lines = _error_lines(res["stderr"])
        assert res["code"] == 2, (argv, res["stderr"][-2000:])
        assert len(lines) == 1 and lines[0].startswith("Config error: "), (argv, res["stderr"])
        assert expected in lines[0], (argv, lines)
        assert "Traceback" not in res["stderr"], argv
    by_key = {tuple(a): _error_lines(r["stderr"])[0] for (a, _), r in zip(COMPOSE_CASES, results)}
    assert "did you mean: max_epochs" in by_key[("+experiment=example", "trainer.max_epoch=3")]
    assert "did you mean: lr" in by_key[("+experiment=example", "module.optimizer.lrr=1")]
    for listing in (by_key[()], by_key[("+experiment=exampel",)]):
        assert "example" in listing and "sleep_tsr" in listing and "lowlight_gp" in listing
    assert not (tmp_path / "data").exists()  # nothing was generated or read

    data = results[-1]
    assert data["code"] == 2, data["stderr"][-2000:]
    (line,) = _error_lines(data["stderr"])
    assert line.startswith("Data error: ") and f"{bad / 'digits.csv'}" in line
    assert "expected 65 columns" in line and "Traceback" not in data["stderr"]


def test_multirun_failed_jobs_are_rows_and_the_sweep_exits_non_zero(tmp_path):
    bad = tmp_path / "bad_digits"
    bad.mkdir()
    (bad / "digits.csv").write_text("px0,label\nnot-a-number,1\n")
    sweeps = {
        "config": ["trainer.devices=1,0", "trainer.max_epochs=1"],
        "data": [f"datamodule.data_dir={bad}", "seed=1,2"],
    }
    cases = [
        ["-m", "+experiment=example", "logger=csv", *args, f"hydra.sweep.dir={tmp_path / name}"]
        for name, args in sweeps.items()
    ]
    config, data = run_cli_cases(cases, data_dir=tmp_path / "data")

    assert config["code"] == 1, config["stderr"][-2000:]
    assert f"1 of 2 jobs failed: see {tmp_path / 'config' / 'summary.md'}" in config["stderr"]
    jobs = pd.read_csv(tmp_path / "config" / "summary.csv").set_index("trainer.devices")
    assert jobs.loc[1, "status"] == "ok"
    assert jobs.loc[0, "status"] == "config_error"
    assert jobs.loc[0, "error"].startswith("trainer.devices: got 0; allowed values")
    assert "trainer.devices: got 0" in (tmp_path / "config" / "summary.md").read_text()

    assert data["code"] == 1, data["stderr"][-2000:]
    assert f"2 of 2 jobs failed: see {tmp_path / 'data' / 'summary.md'}" in data["stderr"]
    jobs = pd.read_csv(tmp_path / "data" / "summary.csv")
    assert list(jobs["status"]) == ["data_error", "data_error"]
    assert jobs["error"].str.contains(str(bad / "digits.csv"), regex=False).all()
