"""The size of each paper's full study, to turn a per-step time into device-hours.

``jobs`` is the size of the study's Hydra grid (tests/benchmarks/test_studies.py checks it
against the sweep preset, so the two cannot drift apart); ``units_per_job`` is how many timed
units (training steps, images) one job runs on the real dataset, with the arithmetic spelled
out in ``basis``. A projection is a planning figure, not a measurement: early stopping, data
loading, validation and evaluation are not in it, and ``basis`` says what else is left out.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Study:
    """One paper study: ``jobs`` x ``units_per_job`` timed units."""

    paper: str
    sweep: str  # the sweep preset (conf/sweep/<sweep>.yaml) whose grid gives ``jobs``
    jobs: int
    units_per_job: int
    unit: str
    basis: str

    def projected_hours(self, seconds_per_unit: float) -> float:
        return self.jobs * self.units_per_job * seconds_per_unit / 3600.0

    def line(self, seconds_per_unit: float, device: str) -> str:
        """The sentence a benchmark prints under its per-step figure."""
        hours = self.projected_hours(seconds_per_unit)
        return (
            f"projected full study on {device}: {self.jobs} jobs x {self.units_per_job:,} "
            f"{self.unit} x {seconds_per_unit * 1e3:.1f} ms = {hours:,.1f} h "
            f"(+sweep={self.sweep}; {self.basis})"
        )


STUDIES: dict[str, Study] = {
    "sleep_tsr": Study(
        paper="sleep_tsr",
        sweep="sleep_tsr_gamma",
        jobs=7 * 20 * 5,  # gamma x LOSO fold x seed
        units_per_job=10_000,
        unit="steps",
        basis="Sleep-EDF-20 ~42k scored epochs, 15 of 20 subjects train, stride-1 L=20 "
        "sequences, batch 32 -> ~1,000 steps/epoch x 10 epochs; validation every 100 steps "
        "and testing not included",
    ),
    "deep_gmm": Study(
        paper="deep_gmm",
        sweep="deep_gmm_gmm_dg",
        jobs=3 * 3,  # GMM(d, g): d in {80, 272, 480} x g in {1, 5, 15}
        units_per_job=20 * 180_000,
        unit="output-layer steps",
        basis="LibriSpeech-100h ~36M frames / batch 200 = 180k steps/epoch x 20 epochs; "
        "the GMM output layer only: the 8 x 2560 hidden layers and the DNN pre-training "
        "add to it",
    ),
    "sd_mae": Study(
        paper="sd_mae",
        sweep="sd_mae_mask_ratio",
        jobs=7,  # mask ratio 0.4 .. 0.9
        units_per_job=100 * 262_144,
        unit="images",
        basis="PCam 262,144 training tiles x 100 pre-training epochs at ViT-S/16 224; "
        "probe and fine-tune epochs not included",
    ),
    "frailty": Study(
        paper="frailty",
        sweep="frailty_splits",
        jobs=2 * 5,  # split x seed
        units_per_job=25 * 3_440,
        unit="steps",
        basis="GSTRIDE 163 participants x 15 min x 100 Hz / stride 50 = 293k windows, "
        "75 % train / batch 64 = 3,440 steps/epoch x 25 epochs (no early stop)",
    ),
    "lowlight_gp": Study(
        paper="lowlight_gp",
        sweep="lowlight_gp_k",
        jobs=2 * 7,  # mode x k
        units_per_job=300 * 5,
        unit="images",
        basis="300 COCO test images x 5 darkening levels per job; the reference CNN's "
        "training not included",
    ),
}
