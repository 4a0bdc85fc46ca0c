"""pipeline=predict for sleep_tsr: a trained checkpoint scores EDF files it never saw as a folder."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from experiments.sleep_tsr.predict import sleep_statistics
from tests.experiments.test_sleep_tsr_experiment import TINY as E2E_TINY
from tests.helpers import run_cli, run_experiment, run_predict

TINY = [*E2E_TINY, "datamodule.crop=none"]  # every epoch scored, as predict does


def test_sleep_statistics_of_a_hand_made_night():
    # W W N1 N2 W N2 N3 REM W W: onset after 2 epochs, one wake epoch inside the sleep period
    stats = sleep_statistics(np.array([0, 0, 1, 2, 0, 2, 3, 4, 0, 0]))
    assert stats["time_in_bed_min"] == 5.0
    assert stats["total_sleep_time_min"] == 2.5
    assert stats["sleep_efficiency_pct"] == pytest.approx(50.0)
    assert stats["sleep_onset_latency_min"] == 1.0
    assert stats["waso_min"] == 0.5
    assert stats["N2_min"] == 1.0 and stats["N2_pct_tst"] == pytest.approx(40.0)


def test_predict_scores_a_folder_of_edf_and_matches_the_test_pipeline(tmp_path):
    import mne
    from PIL import Image

    _, run_dir = run_experiment(TINY, tmp_path)
    with np.load(run_dir / "predictions_test.npz") as z:
        night = str(z["recording"][0])
        test_pred = z["y_pred"][z["recording"] == night]
        test_true = z["y_true"][z["recording"] == night]
    inputs = tmp_path / "new_nights"
    inputs.mkdir()
    for f in (tmp_path / "data").rglob(f"{night[:7]}*.edf"):
        shutil.copy(f, inputs / f.name)
    (inputs / "broken-PSG.edf").write_bytes(b"0       " + bytes(range(256)) * 4)

    out = tmp_path / "predictions"
    proc = run_predict("sleep_tsr", run_dir, inputs, out, tmp_path, "predict_run")
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((out / "predict_summary.json").read_text())
    assert len(summary["predicted"]) == 1
    assert list(summary["skipped"]) == [str(inputs / "broken-PSG.edf")]
    assert "broken-PSG.edf" in summary["skipped"][str(inputs / "broken-PSG.edf")]

    with open(out / f"{night}.csv") as fh:
        rows = list(csv.DictReader(fh))
    classes = ["W", "N1", "N2", "N3", "REM"]
    assert list(rows[0]) == ["onset_s", "stage"] + [f"p_{c}" for c in classes]
    assert [float(r["onset_s"]) for r in rows[:3]] == [0.0, 30.0, 60.0]
    probs = np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows])
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)
    stages = np.array([classes.index(r["stage"]) for r in rows])
    assert (stages == probs.argmax(1)).all()
    # The test pipeline drops unscored epochs ("Movement time", "Sleep stage ?") from the
    # sequence; up to seq_len epochs before the first of them both score the same windows with
    # the same model, so the stages must be identical there.
    hyp = next(inputs.glob("*Hypnogram.edf"))
    scored = np.concatenate(
        [[d.startswith("Sleep stage") and d != "Sleep stage ?"] * int(round(dur / 30))
         for d, dur in zip(mne.read_annotations(hyp).description, mne.read_annotations(hyp).duration)]
    )  # fmt: skip
    same = int(np.argmin(scored)) - 5 + 1 if not scored.all() else len(test_pred)
    assert same >= 10
    np.testing.assert_array_equal(stages[:same], test_pred[:same])

    ann = mne.read_annotations(out / f"{night}-Hypnogram.edf")
    texts = {"W": "Sleep stage W", "N1": "Sleep stage 1", "N2": "Sleep stage 2"}
    texts |= {"N3": "Sleep stage 3", "REM": "Sleep stage R"}
    back = np.concatenate(
        [[d] * int(round(dur / 30)) for d, dur in zip(ann.description, ann.duration)]
    )
    assert list(back) == [texts[classes[s]] for s in stages]
    assert Image.open(out / f"{night}.png").size[0] > 0

    with open(out / "sleep_statistics.csv") as fh:
        (stat,) = list(csv.DictReader(fh))
    assert float(stat["time_in_bed_min"]) == len(stages) / 2
    assert int(stat["scored_epochs"]) == len(test_true)  # the hypnogram's scored epochs
    assert 0.0 <= float(stat["accuracy"]) <= 1.0 and float(stat["kappa"]) <= 1.0

    # a folder where nothing can be predicted ends with a non-zero exit naming the reasons
    (inputs / f"{night}-PSG.edf").unlink()
    bad = run_predict("sleep_tsr", run_dir, inputs, out, tmp_path, "predict_bad")
    assert bad.returncode != 0
    assert "nothing could be predicted" in bad.stdout + bad.stderr


@pytest.mark.slow  # CI time; the runner's evaluate tests cover a missing ckpt_path
def test_predict_with_a_missing_checkpoint_is_a_config_error(tmp_path):
    ckpt_dir = tmp_path / "no_such_run"
    proc = run_cli(
        [
            "+experiment=sleep_tsr",
            "pipeline=predict",
            f"ckpt_path={ckpt_dir}",
            f"predict.input={tmp_path}",
            f"hydra.run.dir={tmp_path / 'predict_run'}",
            "logger=csv",
        ],
        data_dir=tmp_path,
    )
    assert proc.returncode == 2
    assert "ckpt_path" in proc.stderr and str(ckpt_dir) in proc.stderr
