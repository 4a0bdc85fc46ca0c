"""GSTRIDE-like gait cohorts for frailty classification (Amjad et al.)."""

from datamodules.frailty.datamodule import FrailtyDataModule
from datamodules.frailty.generator import CohortSpec, generate_cohort
from datamodules.frailty.labels import CLASS_NAMES, fried_to_label
from datamodules.frailty.reader import CohortError, read_cohort
from datamodules.frailty.schema import CohortSchema

__all__ = [
    "CLASS_NAMES",
    "CohortError",
    "CohortSchema",
    "CohortSpec",
    "FrailtyDataModule",
    "fried_to_label",
    "generate_cohort",
    "read_cohort",
]
