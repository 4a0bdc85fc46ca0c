"""Frame-level speech state classification data for the Deep GMM paper."""

from .alignments import read_alignments, write_alignments
from .corpus import FeatureConfig, FrameCorpus, build_corpus
from .datamodule import FrameDataModule, split_speakers
from .dataset import SplicedFrames
from .features import log_mel, normalise_utterance, num_frames, splice_indices
from .synthetic import SynthConfig, write_synthetic_corpus

__all__ = [
    "FeatureConfig",
    "FrameCorpus",
    "FrameDataModule",
    "SplicedFrames",
    "SynthConfig",
    "build_corpus",
    "log_mel",
    "normalise_utterance",
    "num_frames",
    "read_alignments",
    "splice_indices",
    "split_speakers",
    "write_alignments",
    "write_synthetic_corpus",
]
