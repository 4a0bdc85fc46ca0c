"""The network's input width comes from the cohort: 3-channel (accelerometer only) and
9-channel (plus magnetometer) cohorts train a step with model.in_channels=null."""

from functools import partial

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch

from core.checks import ConfigError
from datamodules.frailty import CohortSpec, FrailtyDataModule, generate_cohort
from experiments.frailty.module import FrailtyClassifier
from models.frailty import DeepConvLSTM

torch.set_num_threads(1)
ACC = ["acc_x", "acc_y", "acc_z"]
NINE = [*ACC, "gyr_x", "gyr_y", "gyr_z", "mag_x", "mag_y", "mag_z"]


@pytest.fixture(scope="module")
def cohort9(tmp_path_factory):
    """9 participants x 12 s with three extra magnetometer columns in every recording."""
    root = generate_cohort(tmp_path_factory.mktemp("ch9"), CohortSpec(9, 12.0, seed=3))
    rng = np.random.default_rng(0)
    for path in sorted((root / "imu").glob("*.csv")):
        frame = pd.read_csv(path)
        for axis in "xyz":
            frame[f"mag_{axis}"] = 40 + rng.normal(0, 1, len(frame))
        frame.to_csv(path, index=False)
    return root


def _fit_one_step(root, channels, net_channels=None):
    dm = FrailtyDataModule(
        data_dir=str(root),
        schema={"channel_columns": channels},
        cache_dir=None,
        embedded_dir=str(root),
        split="window",
        batch_size=16,
    )
    net = DeepConvLSTM(in_channels=net_channels, conv_filters=[4], lstm_units=[5])
    module = FrailtyClassifier(net, partial(torch.optim.Adam, lr=1e-3))
    trainer = L.Trainer(
        max_steps=1,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(module, dm)
    return dm, net, trainer


@pytest.mark.parametrize("channels", [ACC, NINE], ids=["3ch", "9ch"])
def test_channel_count_is_taken_from_the_cohort(cohort9, channels):
    dm, net, trainer = _fit_one_step(cohort9, channels)
    c = len(channels)
    assert dm.in_channels == c == dm.arrays["x_train"].shape[-1]
    assert net.in_channels == c and net.lstms[0].input_size == 4 * c
    assert trainer.global_step == 1
    assert all(torch.isfinite(p).all() for p in net.parameters())


def test_fixed_in_channels_that_disagree_with_the_cohort_is_a_config_error(cohort9):
    with pytest.raises(ConfigError, match="model.in_channels.*6 channels, data has 3"):
        _fit_one_step(cohort9, ACC, net_channels=6)


def test_checkpoint_loads_into_an_unbuilt_net(cohort9):
    """load_run / load_from_checkpoint build the net from the checkpoint's channel count."""
    _, net, _ = _fit_one_step(cohort9, NINE)
    fresh = FrailtyClassifier(
        DeepConvLSTM(conv_filters=[4], lstm_units=[5]), partial(torch.optim.Adam, lr=1e-3)
    )
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    fresh.load_state_dict(state, strict=False)
    assert fresh.net.in_channels == 9
    x = torch.randn(2, 203, 9)
    assert torch.allclose(fresh.net.eval()(x), net.eval()(x))
