"""Deep GMM data: log-mel features, splicing, alignment reader, synthetic corpus, bad input."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import soundfile as sf

from core.checks import ConfigError
from datamodules.deep_gmm import (
    FeatureConfig,
    FrameDataModule,
    SynthConfig,
    build_corpus,
    log_mel,
    read_alignments,
    splice_indices,
    split_speakers,
    write_alignments,
    write_synthetic_corpus,
)

TINY = {"speakers": 4, "utterances_per_speaker": 2, "min_units": 2, "max_units": 3}


def test_log_mel_matches_librosa_melspectrogram():
    librosa = pytest.importorskip("librosa")
    y = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    ours = log_mel(y, 16000)
    ref = librosa.feature.melspectrogram(
        y=y,
        sr=16000,
        n_fft=512,
        win_length=400,
        hop_length=160,
        n_mels=40,
        center=True,
        pad_mode="reflect",
    )
    assert ours.shape == (1 + 8000 // 160, 40)
    np.testing.assert_allclose(ours, np.log(np.maximum(ref, 1e-10)).T, atol=1e-4)


def test_splice_clamps_to_the_utterance():
    frames = np.array([0, 4, 5, 9])
    starts = np.array([0, 0, 5, 5])
    ends = np.array([5, 5, 10, 10])
    idx = splice_indices(frames, starts, ends, left=2, right=1)
    assert idx.tolist() == [[0, 0, 0, 1], [2, 3, 4, 4], [5, 5, 5, 6], [7, 8, 9, 9]]


def test_alignment_reader_round_trip_and_errors(tmp_path):
    ali = {"a-1-0": np.array([0, 0, 3]), "b-1-0": np.array([2])}
    write_alignments(tmp_path / "ali.txt", ali)
    back = read_alignments(tmp_path / "ali.txt")
    assert {k: v.tolist() for k, v in back.items()} == {"a-1-0": [0, 0, 3], "b-1-0": [2]}
    (tmp_path / "bad.txt").write_text("u1 1 2 x\n")
    with pytest.raises(ValueError, match="u1.*non-integer"):
        read_alignments(tmp_path / "bad.txt")
    (tmp_path / "dup.txt").write_text("u1 1\nu1 2\n")
    with pytest.raises(ValueError, match="twice"):
        read_alignments(tmp_path / "dup.txt")
    with pytest.raises(FileNotFoundError, match="utt_id label"):
        read_alignments(tmp_path / "missing.txt")


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    return write_synthetic_corpus(tmp_path_factory.mktemp("synth"), SynthConfig(**TINY))


def test_synthetic_corpus_is_written_in_the_real_format(tiny_corpus):
    wavs = sorted(tiny_corpus.rglob("*.wav"))
    ali = read_alignments(tiny_corpus / "alignments.txt")
    assert len(wavs) == 8 and set(ali) == {w.stem for w in wavs}
    info = sf.info(str(wavs[0]))
    assert info.samplerate == 16000 and info.subtype == "PCM_16"
    assert info.frames == len(ali[wavs[0].stem]) * 160  # one label per 10 ms
    for labels in ali.values():
        assert labels[0] == 0 and labels[-1] == 0 and labels.max() < 41  # silence at both ends


def test_build_corpus_reads_wavs_and_alignments(tiny_corpus, tmp_path):
    corpus = build_corpus(
        tiny_corpus / "audio", tiny_corpus / "alignments.txt", 41, cache_dir=tmp_path
    )
    ali = read_alignments(tiny_corpus / "alignments.txt")
    assert corpus.feats.shape[1] == 40 and np.isfinite(corpus.feats).all()
    for u, utt in enumerate(corpus.utt_ids):
        np.testing.assert_array_equal(corpus.labels[corpus.starts[u] : corpus.ends[u]], ali[utt])
        seg = corpus.feats[corpus.starts[u] : corpus.ends[u]]
        np.testing.assert_allclose(seg.mean(0), 0, atol=1e-4)  # utterance normalisation
    assert corpus.speakers[0] == corpus.utt_ids[0].split("-")[0]
    cached = build_corpus(
        tiny_corpus / "audio", tiny_corpus / "alignments.txt", 41, cache_dir=tmp_path
    )
    np.testing.assert_array_equal(cached.feats, corpus.feats)
    assert len(list(tmp_path.glob("deep_gmm_frames_*.npz"))) == 1


def _one_utt(tmp_path, n_labels, sr=16000, labels_value=1, wave=None):
    (tmp_path / "audio").mkdir(exist_ok=True)
    if wave is None:
        wave = 0.1 * np.random.default_rng(0).standard_normal(sr // 2).astype(np.float32)
    sf.write(tmp_path / "audio" / "s1-1-0001.wav", wave, sr)
    write_alignments(tmp_path / "ali.txt", {"s1-1-0001": np.full(n_labels, labels_value)})
    return tmp_path / "audio", tmp_path / "ali.txt"


def test_length_mismatch_tolerance_and_error(tmp_path):
    audio, ali = _one_utt(tmp_path, 50)  # 0.5 s -> 51 centred frames: one frame off is fine
    assert len(build_corpus(audio, ali, 4).labels) == 50
    audio, ali = _one_utt(tmp_path, 55)
    with pytest.raises(ValueError, match="s1-1-0001.*55 alignment frames but 51"):
        build_corpus(audio, ali, 4)


def test_other_sample_rate_is_resampled(tmp_path, caplog):
    audio, ali = _one_utt(tmp_path, 50, sr=8000, wave=0.1 * np.ones(4000, dtype=np.float32))
    with caplog.at_level(logging.WARNING):
        corpus = build_corpus(audio, ali, 4, FeatureConfig(normalise=False))
    assert len(corpus.labels) == 50 and "1 utterances resampled to 16000" in caplog.text


def test_labels_outside_state_set_and_nan_audio(tmp_path):
    audio, ali = _one_utt(tmp_path, 50, labels_value=7)
    with pytest.raises(ValueError, match="label 7 outside the state set 0..3.*num_states"):
        build_corpus(audio, ali, 4)
    wave = np.zeros(8000, dtype=np.float32)
    wave[100] = np.nan
    audio, ali = _one_utt(tmp_path, 50, sr=16000, wave=wave)
    sf.write(tmp_path / "audio" / "s1-1-0001.wav", wave, 16000, subtype="FLOAT")
    with pytest.raises(ValueError, match="s1-1-0001.*NaN"):
        build_corpus(audio, ali, 4)


def test_unmatched_utterances_are_counted(tmp_path, caplog):
    audio, ali = _one_utt(tmp_path, 50)
    write_alignments(ali, {"s1-1-0001": np.ones(50, int), "s9-1-0000": np.ones(3, int)})
    with caplog.at_level(logging.WARNING):
        build_corpus(audio, ali, 4)
    assert "1 of 2 aligned utterances have no audio file" in caplog.text


def test_speaker_split_is_disjoint_and_seeded():
    spk = [f"s{i}" for i in range(10)]
    a, b = split_speakers(spk, 0.2, 0.2, seed=1), split_speakers(spk, 0.2, 0.2, seed=1)
    assert a == b and len(a["test"]) == 2 and len(a["val"]) == 2 and len(a["train"]) == 6
    assert (
        not (a["train"] & a["val"]) and not (a["train"] & a["test"]) and not (a["val"] & a["test"])
    )
    with pytest.raises(ValueError, match=">= 3 speakers"):
        split_speakers(["a", "b"], 0.2, 0.2, 0)


def test_datamodule_embedded_batches(tmp_path):
    dm = FrameDataModule(
        embedded_dir=str(tmp_path),
        synth=TINY,
        batch_size=16,
        val_speaker_fraction=0.25,
        test_speaker_fraction=0.25,
    )
    dm.prepare_data()
    dm.setup()
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 1040) == (16, dm.input_dim) and y.shape == (16,)
    spk = {
        k: {
            dm.corpus.speakers[int(np.searchsorted(dm.corpus.ends, f, side="right"))]
            for f in v.frames
        }
        for k, v in dm.splits.items()
    }
    assert not (spk["train"] & spk["val"]) and not (spk["train"] & spk["test"])
    # The centre frame of the spliced window (offset 20) is the labelled frame itself.
    ds = dm.splits["val"]
    xb, _ = ds[np.arange(3)]
    np.testing.assert_array_equal(xb.view(3, 26, 40)[:, 20].numpy(), dm.corpus.feats[ds.frames[:3]])


def test_datamodule_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="datamodule.data_dir"):
        FrameDataModule(data_dir=str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="datamodule.alignment_file"):
        FrameDataModule(data_dir=str(tmp_path), alignment_file="missing.txt")
    with pytest.raises(ConfigError, match="datamodule.synth"):
        FrameDataModule(synth={"speakerz": 3})
    with pytest.raises(ConfigError, match="datamodule.val_speaker_fraction"):
        FrameDataModule(val_speaker_fraction=0.6, test_speaker_fraction=0.5)
