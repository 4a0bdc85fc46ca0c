"""pipeline=predict for frailty: a trained checkpoint classifies the participants of a cohort.

The fast tests train and predict in process (the runner's own predict loop); the slow one runs
both through the CLI as a user does.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from core.checks import ConfigError
from experiments.frailty.predict import FrailtyPredictor
from experiments.runner.predict import load_trained, resolve_checkpoint
from tests.experiments.test_frailty_e2e import TINY
from tests.helpers import (
    compose_config,
    fit_test_in_process,
    predict_in_process,
    run_experiment,
    run_predict,
)

CLASSES = ["robust", "pre_frail", "frail"]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def _damaged_copy(cohort: Path, inputs: Path, broken: str, missing: str) -> None:
    """The cohort with one recording lacking channel columns and one recording deleted."""
    shutil.copytree(cohort, inputs)
    (inputs / "imu" / f"{broken}.csv").write_text("time_s,acc_x\n0.0,1.0\n0.01,2.0\n")
    (inputs / "imu" / f"{missing}.csv").unlink()


def check_outputs(out: Path, inputs: Path, broken: str, missing: str, n: int) -> tuple:
    """Every output's format; returns (windows rows, participants by id)."""
    summary = json.loads((out / "predict_summary.json").read_text())
    skipped = summary["skipped"]
    assert sorted(skipped) == sorted(str(inputs / "imu" / f"{p}.csv") for p in (broken, missing))
    assert "acc_y" in skipped[str(inputs / "imu" / f"{broken}.csv")]  # names what is wrong
    assert missing in skipped[str(inputs / "imu" / f"{missing}.csv")]
    assert len(summary["predicted"]) == n - 2

    windows = _rows(out / "windows.csv")
    probs = [f"p_{c}" for c in CLASSES]
    assert list(windows[0]) == ["participant", "segment", "window", "onset_s", "class", *probs, "true_class"]  # fmt: skip
    p = np.array([[float(r[k]) for k in probs] for r in windows])
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-4)
    chosen = p[np.arange(len(windows)), [CLASSES.index(r["class"]) for r in windows]]
    assert (chosen >= p.max(1) - 1e-6).all()  # the most probable class (6 decimals may tie)
    first = [r for r in windows if r["participant"] == windows[0]["participant"]]
    assert [float(r["onset_s"]) for r in first[:3]] == [0.0, 0.5, 1.0]  # stride 50 at 100 Hz

    people = {r["participant"]: r for r in _rows(out / "participants.csv")}
    assert broken not in people and missing not in people and len(people) == n - 2
    for pid, row in people.items():
        mine = [r for r in windows if r["participant"] == pid]
        votes = np.bincount([CLASSES.index(r["class"]) for r in mine], minlength=3)
        assert int(row["windows"]) == len(mine) and row["class"] == CLASSES[int(votes.argmax())]
        assert [int(row[f"votes_{c}"]) for c in CLASSES] == votes.tolist()
        mean = np.mean([[float(r[k]) for k in probs] for r in mine], axis=0)
        np.testing.assert_allclose([float(row[k]) for k in probs], mean, atol=1e-5)

    table = _rows(out / "confusion_participants.csv")
    assert [r["true"] for r in table] == CLASSES
    assert sum(int(r[c]) for r in table for c in CLASSES) == n - 2
    assert (out / "confusion_participants.png").read_bytes()[:4] == b"\x89PNG"
    return windows, people


def check_matches_test(windows, people, test_ids, test_cm, subject_acc) -> None:
    """The test participants, predicted from their files alone, give exactly the window
    confusion matrix and the participant accuracy of the test pipeline."""
    cm = np.zeros((3, 3), dtype=int)
    for r in windows:
        if r["participant"] in test_ids:
            cm[CLASSES.index(r["true_class"]), CLASSES.index(r["class"])] += 1
    np.testing.assert_array_equal(cm, test_cm)
    hits = [people[p]["class"] == people[p]["true_class"] for p in test_ids]
    assert np.mean(hits) == pytest.approx(subject_acc)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained and tested in process; its checkpoint carries config and state."""
    tmp = tmp_path_factory.mktemp("frailty_predict")
    cfg = compose_config(TINY, tmp)
    torch.manual_seed(0)
    dm = instantiate(cfg.datamodule, _convert_="partial")
    module = instantiate(cfg.module, _convert_="partial")
    ckpt = tmp / "run" / "checkpoints" / "last.ckpt"
    metrics = fit_test_in_process(cfg, module, dm, ckpt)
    cohort = dm.cohort_root()
    ids, split = dm.meta["participants"], dm.meta["subject_split"]
    test_ids = [p for p, s in zip(ids, split) if s == 2]
    train_ids = [p for p, s in zip(ids, split) if s == 0]
    return tmp, ckpt, cohort, dm, module, metrics, test_ids, train_ids


def test_predict_a_cohort_as_the_test_pipeline_did_skipping_bad_participants(trained):
    tmp, ckpt, cohort, dm, module, metrics, test_ids, train_ids = trained
    inputs = tmp / "new_cohort"
    _damaged_copy(cohort, inputs, train_ids[0], train_ids[1])
    out = tmp / "predictions"
    overrides = ["+experiment=frailty", f"ckpt_path={ckpt.parent.parent}"]
    overrides += [f"predict.input={inputs}", f"predict.output={out}"]
    result = predict_in_process(overrides, tmp)
    assert result == {"predict/files": 14.0, "predict/skipped": 2.0}

    windows, people = check_outputs(out, inputs, train_ids[0], train_ids[1], 16)
    check_matches_test(
        windows, people, test_ids, module.test_confusion, metrics["test/subject_acc"]
    )
    with torch.no_grad():  # window by window: the cached test inputs through the same model
        want = torch.softmax(module.eval()(torch.from_numpy(np.array(dm.arrays["x_test"]))), -1)
    got = [[float(r[f"p_{c}"]) for c in CLASSES] for r in windows if r["participant"] in test_ids]
    np.testing.assert_allclose(np.array(got), want.numpy(), atol=2e-6)


def test_predict_needs_no_score_and_no_table(trained, tmp_path):
    _, ckpt, cohort, *_ = trained
    model = load_trained(resolve_checkpoint(str(ckpt)))
    opts = OmegaConf.create({})
    unscored = tmp_path / "unscored"
    (unscored / "imu").mkdir(parents=True)
    with open(cohort / "participants.csv") as fh:
        table = list(csv.DictReader(fh))
    with open(unscored / "participants.csv", "w", newline="") as fh:
        writer = csv.writer(fh, delimiter=";")
        writer.writerow(["participant_id", "sampling_rate_hz"])
        for r in table[:3]:
            writer.writerow([r["participant_id"], r["sampling_rate_hz"]])
            text = (cohort / "imu" / f"{r['participant_id']}.csv").read_text()
            (unscored / "imu" / f"{r['participant_id']}.csv").write_text(text.replace(",", ";"))

    results = {}
    for name, root, schema in (
        ("table", unscored, {"delimiter": ";"}),  # another export: names from the override
        ("bare", cohort / "imu", {"recording_pattern": "{id}.csv"}),  # no table: rate from time
    ):
        predictor = FrailtyPredictor(model, opts, schema=schema)
        out = tmp_path / name
        out.mkdir()
        for path in predictor.inputs(root):
            predictor.predict(path, out)
        predictor.finish(out)
        assert not (out / "confusion_participants.csv").exists()
        rows = _rows(out / "participants.csv")
        assert "true_class" not in rows[0] and "fried_score" not in rows[0]
        results[name] = {r["participant"]: r for r in rows}
    assert len(results["table"]) == 3 and len(results["bare"]) == 16
    for pid, row in results["table"].items():  # the same recording, the same answer
        assert row == results["bare"][pid]

    table_file = FrailtyPredictor(model, opts, schema={"delimiter": ";"})  # the table as input
    assert len(table_file.inputs(unscored / "participants.csv")) == 3
    with pytest.raises(ConfigError, match="channel_columns"):
        FrailtyPredictor(model, opts, schema={"channel_columns": ["acc_x", "acc_y"]})


@pytest.mark.slow  # two CLI start-ups; the in-process tests above check the same outputs
def test_cli_train_then_predict_a_cohort(tmp_path):
    _, run_dir = run_experiment(TINY, tmp_path)
    cohort = next((tmp_path / "data" / "embedded" / "frailty_gait").iterdir())
    meta = next((tmp_path / "data" / "cache" / "frailty").glob("*/meta.json"))
    meta = json.loads(meta.read_text())
    split = dict(zip(meta["participants"], meta["subject_split"]))
    train_ids = [p for p, s in split.items() if s == 0]
    inputs = tmp_path / "new_cohort"
    _damaged_copy(cohort, inputs, train_ids[0], train_ids[1])

    out = tmp_path / "predictions"
    proc = run_predict("frailty", run_dir, inputs, out, tmp_path, "predict_run")
    assert proc.returncode == 0, proc.stderr[-4000:]
    windows, people = check_outputs(out, inputs, train_ids[0], train_ids[1], 16)
    test_cm = np.array(json.loads((run_dir / "test_confusion.json").read_text())["confusion"])
    subject_acc = json.loads((run_dir / "metrics.json").read_text())["metrics"]["test/subject_acc"]
    test_ids = [p for p, s in split.items() if s == 2]
    check_matches_test(windows, people, test_ids, test_cm, subject_acc)
