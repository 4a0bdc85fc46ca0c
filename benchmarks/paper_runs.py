"""What the tour and the report run for each paper, what they read back, and what it is compared with.

One ``PaperRun`` per result row: the experiment preset and its overrides (``full`` for
docs/results.md, ``short`` for the tour and ``--quick``), the metrics reported, the trivial
reference read from the same job (majority class, the dark input, a random-init encoder), and
the paper's own number with where it comes from. The tour and the report share these, so the
README's first table and docs/results.md cannot describe different runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

Metrics = dict[str, float]


def _sleep_majority(job: Path, m: Metrics) -> Metrics:
    """Always answering the test nights' most frequent stage (from the saved predictions)."""
    path = job / "predictions_test.npz"
    if not path.exists():
        return {}
    y = np.load(path)["y_true"]
    return {"test/acc": float(np.bincount(y).max() / len(y))}


def _key(name: str, label: str | None = None) -> Callable[[Path, Metrics], Metrics]:
    """A reference the job logs itself (``name``), reported under ``label``'s metric."""

    def read(job: Path, m: Metrics) -> Metrics:
        return {label or name: m[name]} if name in m else {}

    return read


@dataclass(frozen=True)
class PaperRun:
    """One row of the results: a preset, its budgets, its metric, its reference, the paper."""

    name: str
    paper: str
    preset: str
    metric: str  # the headline metric (a key of the job's metrics.json)
    reference: Callable[[Path, Metrics], Metrics]  # job dir, metrics -> {metric: value}
    reference_label: str
    paper_value: float | None
    paper_source: str
    meaning: str  # one line on what the gap to the paper means
    short: tuple[str, ...] = ()  # small budget: the tour and --quick
    full: tuple[str, ...] = ()  # the report's budget (the preset's own when empty)
    extra_metrics: tuple[str, ...] = ()

    def overrides(self, short: bool) -> list[str]:
        return [f"+experiment={self.preset}", *(self.short if short else self.full)]


# The CPU-sized DeepConvLSTM of the frailty rows (docs/frailty.md), and their epochs short / full.
_FRAILTY_CPU = ("model.conv_filters=[16]", "model.lstm_units=[32]")
_FRAILTY_SHORT, _FRAILTY_FULL = "trainer.max_epochs=6", "trainer.max_epochs=10"

RUNS: tuple[PaperRun, ...] = (
    PaperRun(
        name="sleep_tsr",
        paper="sleep_tsr",
        preset="sleep_tsr",
        metric="test/acc",
        extra_metrics=("test/kappa", "test/f1_macro"),
        reference=_sleep_majority,
        reference_label="majority stage",
        paper_value=0.862,
        paper_source="Table 1, Sleep-EDF-20, gamma 1e-4",
        meaning="8 synthetic subjects and ~100 steps vs 20 real subjects, LOSO, ~10k steps: "
        "shows the pipeline learns, not the paper's accuracy",
        short=("trainer.max_epochs=2",),
    ),
    PaperRun(
        name="deep_gmm",
        paper="deep_gmm",
        preset="deep_gmm",
        metric="test/acc",
        reference=_key("test/majority_acc", "test/acc"),
        reference_label="majority state",
        paper_value=0.6266,
        paper_source="Table 3, 7 x 2560 + GMM(272, 5), 2432 states, is-is",
        meaning="41 synthetic phone states and a 3 x 256 network vs 2432 tied states on real "
        "speech: a different task; compare with the majority state",
        short=("trainer.max_epochs=2",),
    ),
    PaperRun(
        name="sd_mae",
        paper="sd_mae",
        preset="sd_mae",
        metric="test/probe_acc",
        extra_metrics=("test/acc", "pretrain/val_aux"),  # fine-tuned; the distillation term
        reference=_key("test/probe_acc_random", "test/probe_acc"),
        reference_label="random-init encoder",
        paper_value=0.9482,
        paper_source="Table 1, NCT-CRC-HE, SD-MAE (fine-tuned)",
        meaning="a 0.8 M-parameter ViT on 1,350 synthetic tiles vs ViT-S for 100 epochs on 89k "
        "real ones; one seed at the tour's 8 epochs cannot separate the probe from a random-init "
        "encoder; over 3 seeds at the preset's 30, SD-MAE's probe is within one std of it and "
        "MAE's 8-11 points above (docs/sd_mae.md)",
        short=(
            "pipeline.pretrain_epochs=8",
            "pipeline.probe_epochs=8",
            "pipeline.finetune_epochs=1",
        ),
    ),
    PaperRun(
        name="frailty_subject",
        paper="frailty",
        preset="frailty",
        metric="test/acc",
        extra_metrics=("test/balanced_acc",),
        reference=_key("test/majority_acc", "test/acc"),
        reference_label="majority class",
        paper_value=None,
        paper_source="the paper reports the window split only",
        meaning="participants disjoint between train and test: what a screening tool faces",
        short=(*_FRAILTY_CPU, _FRAILTY_SHORT),
        full=(*_FRAILTY_CPU, _FRAILTY_FULL),
    ),
    PaperRun(
        name="frailty_window",
        paper="frailty",
        preset="frailty",
        metric="test/acc",
        extra_metrics=("test/balanced_acc",),
        reference=_key("test/majority_acc", "test/acc"),
        reference_label="majority class",
        paper_value=0.91,
        paper_source="Sec. 4, GSTRIDE, window shuffle 75/12.5/12.5",
        meaning="windows of one walker in train and test: the score includes recognising "
        "the walker (docs/frailty.md)",
        short=("datamodule.split=window", *_FRAILTY_CPU, _FRAILTY_SHORT),
        full=("datamodule.split=window", *_FRAILTY_CPU, _FRAILTY_FULL),
    ),
    PaperRun(
        name="lowlight_gp",
        paper="lowlight_gp",
        preset="lowlight_gp",
        metric="test/psnr",
        reference=_key("test/dark_psnr", "test/psnr"),
        reference_label="dark input",
        paper_value=16.70,
        paper_source="Table III, CM, k = 200, 300 COCO images (dB)",
        meaning="2 embedded photos vs 300 COCO images, and a reference CNN trained for "
        "minutes: compare with the dark input",
        short=("lowlight.levels=[0,4,8,12,16,20,24]", "trainer.max_epochs=3"),
    ),
)


def job_metrics(job: Path) -> Metrics | None:
    """The metrics of a finished job (None when it failed or has no metrics.json)."""
    path = job / "metrics.json"
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    if record.get("status", "ok") != "ok":
        return None
    return {k: v for k, v in record["metrics"].items() if isinstance(v, int | float)}
