"""Deep GMM data: log-mel features, splicing, alignment reader, synthetic corpus, bad input."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import soundfile as sf

from core.checks import ConfigError
from core.errors import DataError
from datamodules.deep_gmm import (
    FeatureConfig,
    FrameDataModule,
    SynthConfig,
    build_corpus,
    log_mel,
    num_frames,
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
    ours = log_mel(y, 16000, snip_edges=False, filterbank="librosa")
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
    # One label per Kaldi frame (snip_edges): 1 + (N - 400) // 160 for N samples.
    assert len(ali[wavs[0].stem]) == 1 + (info.frames - 400) // 160
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
    audio, ali = _one_utt(tmp_path, 48)  # 0.5 s -> 1 + (8000 - 400) // 160 = 48 Kaldi frames
    exact = FeatureConfig(frame_tolerance=0)
    assert len(build_corpus(audio, ali, 4, exact).labels) == 48
    audio, ali = _one_utt(tmp_path, 51)  # a centred-frame alignment (1 + 8000 // 160)
    with pytest.raises(DataError, match="s1-1-0001.*51 alignment frames but 48.*snip_edges"):
        build_corpus(audio, ali, 4)
    centred = FeatureConfig(frame_tolerance=0, snip_edges=False)
    assert len(build_corpus(audio, ali, 4, centred).labels) == 51


@pytest.mark.parametrize("n", [400, 401, 559, 560, 8000, 16000 * 3 + 77])
def test_frame_count_is_kaldis(n):
    y = 0.1 * np.random.default_rng(n).standard_normal(n).astype(np.float32)
    assert log_mel(y, 16000).shape == (1 + (n - 400) // 160, 40) == (num_frames(n, 400, 160), 40)
    assert log_mel(y, 16000, snip_edges=False).shape[0] == 1 + n // 160


def test_kaldi_filterbank_matches_kaldi_native_fbank():
    """Our default features are Kaldi's compute-fbank-feats (dither 0) to 1e-3 in log energy."""
    knf = pytest.importorskip("kaldi_native_fbank")
    rng = np.random.default_rng(0)
    for n in (8000, 8123, 16000 * 2 + 77):
        y = rng.standard_normal(n).astype(np.float32) * np.linspace(0.01, 3000, n, dtype=np.float32)
        opts = knf.FbankOptions()
        opts.frame_opts.dither = 0.0
        opts.frame_opts.snip_edges = True
        opts.mel_opts.num_bins = 40
        fbank = knf.OnlineFbank(opts)
        fbank.accept_waveform(16000, y.tolist())
        fbank.input_finished()
        ref = np.stack([fbank.get_frame(i) for i in range(fbank.num_frames_ready)])
        ours = log_mel(y, 16000)
        assert ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, atol=1e-3)


def test_other_sample_rate_is_resampled(tmp_path, caplog):
    audio, ali = _one_utt(tmp_path, 48, sr=8000, wave=0.1 * np.ones(4000, dtype=np.float32))
    with caplog.at_level(logging.WARNING):
        corpus = build_corpus(audio, ali, 4, FeatureConfig(normalise=False))
    assert len(corpus.labels) == 48 and "1 utterances resampled to 16000" in caplog.text


def test_labels_outside_state_set_and_nan_audio(tmp_path):
    audio, ali = _one_utt(tmp_path, 50, labels_value=7)
    with pytest.raises(DataError, match="label 7 outside the state set 0..3.*num_states"):
        build_corpus(audio, ali, 4)
    wave = np.zeros(8000, dtype=np.float32)
    wave[100] = np.nan
    audio, ali = _one_utt(tmp_path, 50, sr=16000, wave=wave)
    sf.write(tmp_path / "audio" / "s1-1-0001.wav", wave, 16000, subtype="FLOAT")
    with pytest.raises(DataError, match="s1-1-0001.*NaN"):
        build_corpus(audio, ali, 4)


def test_unmatched_utterances_are_counted(tmp_path, caplog):
    audio, ali = _one_utt(tmp_path, 48)
    write_alignments(ali, {"s1-1-0001": np.ones(48, int), "s9-1-0000": np.ones(3, int)})
    with caplog.at_level(logging.WARNING):
        build_corpus(audio, ali, 4)
    assert "1 of 2 aligned utterances have no audio file" in caplog.text


def _speech(n=8000, seed=0):
    return 0.1 * np.random.default_rng(seed).standard_normal(n).astype(np.float32)


def test_stereo_is_averaged_with_a_log_line_and_cancelling_channels_refused(tmp_path, caplog):
    audio, ali = _one_utt(tmp_path, 48)
    left = _speech()
    path = audio / "s1-1-0001.wav"
    sf.write(path, np.stack([left, 0.5 * left + _speech(seed=1)], 1), 16000, subtype="FLOAT")
    with caplog.at_level(logging.WARNING):
        assert len(build_corpus(audio, ali, 4).labels) == 48
    assert "1 multi-channel files averaged to mono" in caplog.text
    sf.write(path, np.stack([left, -left], 1), 16000, subtype="FLOAT")  # polarity-inverted
    with pytest.raises(DataError, match="s1-1-0001.wav.*cancel"):
        build_corpus(audio, ali, 4)


def test_silent_files_are_skipped_counted_and_named(tmp_path, caplog):
    audio, ali = _one_utt(tmp_path, 48)
    sf.write(audio / "s2-1-0001.wav", np.zeros(8000, dtype=np.float32), 16000)
    write_alignments(ali, {"s1-1-0001": np.ones(48, int), "s2-1-0001": np.ones(48, int)})
    with caplog.at_level(logging.WARNING):
        corpus = build_corpus(audio, ali, 4)
    assert corpus.utt_ids == ["s1-1-0001"] and len(corpus.labels) == 48
    assert "1 of 2 utterances skipped: digital silence" in caplog.text
    assert "s2-1-0001 (" in caplog.text
    write_alignments(ali, {"s2-1-0001": np.ones(48, int)})
    with pytest.raises(DataError, match="every utterance .* digital silence"):
        build_corpus(audio, ali, 4)


def _corpus_dir(tmp_path, utts):
    root = tmp_path / "corpus"
    (root / "audio").mkdir(parents=True)
    for i, utt in enumerate(utts):
        sf.write(root / "audio" / f"{utt}.wav", _speech(seed=i), 16000)
    write_alignments(root / "ali.txt", {u: np.ones(48, int) for u in utts})
    return root


def test_speakers_from_utt2spk_or_regex_and_the_log_says_which(tmp_path, caplog):
    utts = [f"u{i:02d}" for i in range(6)]  # ids without a speaker part
    root = _corpus_dir(tmp_path, utts)
    before = sorted(p.name for p in root.rglob("*"))
    common = dict(
        data_dir=str(root),
        alignment_file="ali.txt",
        audio_subdir="audio",
        num_states=4,
        val_speaker_fraction=0.34,
        test_speaker_fraction=0.34,
        cache_dir=str(tmp_path / "cache"),
    )
    with caplog.at_level(logging.INFO):
        dm = FrameDataModule(**common)
        dm.setup()
    assert "6 of 6 utterances have no speaker" in caplog.text and "u00" in caplog.text
    (root / "utt2spk").write_text("".join(f"{u} spk{i // 2}\n" for i, u in enumerate(utts)))
    caplog.clear()
    with caplog.at_level(logging.INFO):
        dm = FrameDataModule(**common, utt2spk="utt2spk")
        dm.setup()
    assert "have no speaker" not in caplog.text and "speakers from utt2spk file" in caplog.text
    assert dm.corpus.speakers == ["spk0", "spk0", "spk1", "spk1", "spk2", "spk2"]
    assert {len(v.frames) for v in dm.splits.values()} == {96}  # one speaker (2 utts) per split
    dm = FrameDataModule(**common, speaker_regex=r"^(u0)[0-3]")
    dm.setup()
    assert dm.corpus.speakers[:4] == ["u0"] * 4 and dm.corpus.speakers[4:] == ["u04", "u05"]
    # Features are cached under cache_dir, nothing is written into data_dir (may be read-only).
    assert len(list((tmp_path / "cache").glob("deep_gmm_frames_*.npz"))) == 1
    (root / "utt2spk").unlink()
    assert sorted(p.name for p in root.rglob("*")) == before
    with pytest.raises(ConfigError, match="datamodule.utt2spk"):
        FrameDataModule(**common, utt2spk="utt2spk")
    with pytest.raises(ConfigError, match="datamodule.speaker_regex"):
        FrameDataModule(**common, speaker_regex="([")
    with pytest.raises(ConfigError, match="datamodule.speaker_regex.*group"):
        FrameDataModule(**common, speaker_regex="^u")


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
