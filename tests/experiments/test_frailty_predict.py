"""pipeline=predict for frailty: a trained checkpoint classifies the participants of a cohort."""

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
from tests.helpers import run_experiment, run_predict

CLASSES = ["robust", "pre_frail", "frail"]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny training run, its cohort and its test participants (from the split cache)."""
    tmp = tmp_path_factory.mktemp("frailty_predict")
    _, run_dir = run_experiment(TINY, tmp)
    cohort = next((tmp / "data" / "embedded" / "frailty_gait").iterdir())
    meta = json.loads(next((tmp / "data" / "cache" / "frailty").glob("*/meta.json")).read_text())
    test_ids = [p for p, s in zip(meta["participants"], meta["subject_split"]) if s == 2]
    train_ids = [p for p, s in zip(meta["participants"], meta["subject_split"]) if s == 0]
    return tmp, run_dir, cohort, test_ids, train_ids


def test_predict_a_cohort_matches_the_test_pipeline_and_skips_bad_participants(trained):
    tmp, run_dir, cohort, test_ids, train_ids = trained
    inputs = tmp / "new_cohort"
    shutil.copytree(cohort, inputs)
    broken, missing = train_ids[0], train_ids[1]
    (inputs / "imu" / f"{broken}.csv").write_text("time_s,acc_x\n0.0,1.0\n0.01,2.0\n")
    (inputs / "imu" / f"{missing}.csv").unlink()

    out = tmp / "predictions"
    proc = run_predict("frailty", run_dir, inputs, out, tmp, "predict_run")
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((out / "predict_summary.json").read_text())
    skipped = summary["skipped"]
    assert sorted(skipped) == sorted(str(inputs / "imu" / f"{p}.csv") for p in (broken, missing))
    assert "acc_y" in skipped[str(inputs / "imu" / f"{broken}.csv")]  # names what is wrong
    assert missing in skipped[str(inputs / "imu" / f"{missing}.csv")]
    assert len(summary["predicted"]) == 16 - 2

    windows = _rows(out / "windows.csv")
    assert list(windows[0]) == ["participant", "segment", "window", "onset_s", "class"] + [
        f"p_{c}" for c in CLASSES
    ] + ["true_class"]
    probs = np.array([[float(r[f"p_{c}"]) for c in CLASSES] for r in windows])
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)
    assert [CLASSES.index(r["class"]) for r in windows] == probs.argmax(1).tolist()
    first = [r for r in windows if r["participant"] == test_ids[0]]
    assert [float(r["onset_s"]) for r in first[:3]] == [0.0, 0.5, 1.0]  # stride 50 at 100 Hz

    people = {r["participant"]: r for r in _rows(out / "participants.csv")}
    assert broken not in people and missing not in people and len(people) == 14
    for pid, row in people.items():
        mine = [r for r in windows if r["participant"] == pid]
        votes = np.bincount([CLASSES.index(r["class"]) for r in mine], minlength=3)
        assert int(row["windows"]) == len(mine) and row["class"] == CLASSES[int(votes.argmax())]
        mean = np.mean([[float(r[f"p_{c}"]) for c in CLASSES] for r in mine], axis=0)
        np.testing.assert_allclose([float(row[f"p_{c}"]) for c in CLASSES], mean, atol=1e-5)

    # The test split's participants, predicted from their files alone, give exactly the
    # window confusion matrix and the participant accuracy the test pipeline computed.
    test_cm = np.array(json.loads((run_dir / "test_confusion.json").read_text())["confusion"])
    cm = np.zeros((3, 3), dtype=int)
    for r in windows:
        if r["participant"] in test_ids:
            cm[CLASSES.index(r["true_class"]), CLASSES.index(r["class"])] += 1
    np.testing.assert_array_equal(cm, test_cm)
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    hits = [people[p]["class"] == people[p]["true_class"] for p in test_ids]
    assert np.mean(hits) == pytest.approx(metrics["test/subject_acc"])
    # ... and, window by window, the probabilities of the test split's cached model inputs
    dm = instantiate(
        OmegaConf.load(run_dir / "config_resolved.yaml").datamodule, _convert_="partial"
    )
    dm.setup("test")
    model = load_trained(resolve_checkpoint(str(run_dir))).module
    with torch.no_grad():
        want = torch.softmax(model(torch.from_numpy(np.array(dm.arrays["x_test"]))), -1).numpy()
    got = np.array([[float(r[f"p_{c}"]) for c in CLASSES] for r in windows if r["participant"] in test_ids])  # fmt: skip
    np.testing.assert_allclose(got, want, atol=2e-6)

    table = _rows(out / "confusion_participants.csv")
    assert [r["true"] for r in table] == CLASSES
    assert sum(int(r[c]) for r in table for c in CLASSES) == 14
    assert (out / "confusion_participants.png").read_bytes()[:4] == b"\x89PNG"


def test_predict_needs_no_score_and_no_table(trained, tmp_path):
    """In process (no CLI start-up): a table without Fried scores, then bare recordings."""
    _, run_dir, cohort, _, _ = trained
    model = load_trained(resolve_checkpoint(str(run_dir)))
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
        ("table", unscored, {"delimiter": ";"}),
        ("bare", cohort / "imu", {"recording_pattern": "{id}.csv"}),
    ):
        predictor = FrailtyPredictor(model, opts, schema=schema)
        files = predictor.inputs(root)
        out = tmp_path / name
        out.mkdir()
        for path in files:
            predictor.predict(path, out)
        predictor.finish(out)
        assert not (out / "confusion_participants.csv").exists()
        rows = _rows(out / "participants.csv")
        assert "true_class" not in rows[0] and "fried_score" not in rows[0]
        results[name] = {r["participant"]: r for r in rows}
    assert len(results["table"]) == 3 and len(results["bare"]) == 16
    for pid, row in results["table"].items():  # the same recording, the same answer
        assert row == results["bare"][pid]

    with pytest.raises(ConfigError, match="channel_columns"):
        FrailtyPredictor(model, opts, schema={"channel_columns": ["acc_x", "acc_y"]})
