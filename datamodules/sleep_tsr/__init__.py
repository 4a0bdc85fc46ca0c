"""Sleep-EDF Expanded (Sleep Cassette) data for the sleep_tsr paper."""

from datamodules.sleep_tsr.datamodule import SleepEDFDataModule

__all__ = ["SleepEDFDataModule"]
