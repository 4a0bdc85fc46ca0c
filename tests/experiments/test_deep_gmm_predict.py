"""pipeline=predict for deep_gmm: audio in, frame posteriors and a readable alignment file out."""

from __future__ import annotations

import json
import shutil

import numpy as np
from hydra.utils import instantiate
from omegaconf import OmegaConf

from datamodules.deep_gmm.alignments import read_alignments
from tests.experiments.test_deep_gmm import TINY as E2E_TINY
from tests.helpers import run_experiment, run_predict

TINY = ["+experiment=deep_gmm", *E2E_TINY]


def test_predict_writes_posteriors_and_alignments_that_match_the_test_pipeline(tmp_path):
    _, run_dir = run_experiment(TINY, tmp_path)
    test_acc = json.loads((run_dir / "metrics.json").read_text())["metrics"]["test/acc"]
    dm = instantiate(OmegaConf.load(run_dir / "config_resolved.yaml").datamodule)
    dm.setup("test")
    test = dm.splits["test"]
    utts = sorted(
        {dm.corpus.utt_ids[u] for u in np.searchsorted(dm.corpus.ends, test.frames, "right")}
    )
    audio = dm._paths()[1]
    inputs = tmp_path / "new_audio"
    inputs.mkdir()
    for utt in utts:
        src = next(audio.rglob(f"{utt}.*"))
        shutil.copy(src, inputs / src.name)
    (inputs / "silence.wav").write_bytes((next(inputs.iterdir())).read_bytes()[:44])  # header only

    out = tmp_path / "predictions"
    proc = run_predict("deep_gmm", run_dir, inputs, out, tmp_path, "predict_run")
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((out / "predict_summary.json").read_text())
    assert list(summary["skipped"]) == [str(inputs / "silence.wav")]

    ali = read_alignments(out / "alignments.txt")  # the datamodule's own reader takes it back
    assert sorted(ali) == utts
    labels = {dm.corpus.utt_ids[u]: dm.corpus.labels[s:e] for u, (s, e) in enumerate(zip(dm.corpus.starts, dm.corpus.ends))}  # fmt: skip
    hits = total = 0
    for utt in utts:
        post = np.load(out / "posteriors" / f"{utt}.npy")
        assert post.dtype == np.float32 and post.shape[1] == dm.num_states
        np.testing.assert_allclose(post.sum(1), 1.0, atol=1e-4)
        np.testing.assert_array_equal(post.argmax(1), ali[utt])
        n = min(len(post), len(labels[utt]))
        hits += int((ali[utt][:n] == labels[utt][:n]).sum())
        total += n
    assert total == len(test.frames)
    assert abs(hits / total - test_acc) < 2e-3  # the test pipeline's frame accuracy
