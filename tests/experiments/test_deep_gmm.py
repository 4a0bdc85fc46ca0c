"""Deep GMM through the runner: regimes, DNN init by path, config errors, the CPU sweep preset."""

from __future__ import annotations

import json
from unittest.mock import PropertyMock, patch

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from core.checks import ConfigError
from experiments.deep_gmm.module import (
    FINITE_CHECK_EVERY,
    FrameStateClassifier,
    load_hidden_layers,
)
from models.deep_gmm import DNN, DeepGMM
from tests.helpers import config_error_in_process, run_experiment, run_sweep

# A corpus and models small enough for a few seconds per job on one core.
TINY = [
    "datamodule.synth.speakers=4",
    "datamodule.synth.utterances_per_speaker=3",
    "datamodule.synth.max_units=12",
    "datamodule.val_speaker_fraction=0.25",
    "datamodule.test_speaker_fraction=0.25",
    "model.width=32",
    "pretrain.model.width=32",
    "trainer.max_epochs=1",
    "logger=csv",
    "print_config=false",
    "callbacks.progress_bar.refresh_rate=0",
]


def _metrics(run_dir):
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "ok", record
    return record["metrics"]


def _tiny_dnn_ckpt(tmp_path, depth=3, width=8):
    dnn = DNN(in_features=20, num_states=4, width=width, depth=depth)
    path = tmp_path / "dnn.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in dnn.state_dict().items()}}, path)
    return dnn, path


def _opt():
    return lambda params: torch.optim.SGD(params, lr=0.1)


def test_init_from_dnn_checkpoint_and_freeze(tmp_path):
    dnn, path = _tiny_dnn_ckpt(tmp_path)
    net = DeepGMM(in_features=20, num_states=4, width=8, depth=2, gmm_dim=3, gmm_components=2)
    module = FrameStateClassifier(net, _opt(), num_states=4, regime="separate", init_ckpt=str(path))
    for i in range(2):  # the DGMM's 2 layers are the DNN's first 2
        torch.testing.assert_close(net.hidden[i].fc.weight, dnn.hidden[i].fc.weight)
    assert not any(p.requires_grad for p in net.hidden.parameters())
    opt = module.configure_optimizers()
    trained = {id(p) for g in opt.param_groups for p in g["params"]}
    assert trained == {id(p) for n, p in net.named_parameters() if not n.startswith("hidden.")}


def test_init_errors_name_the_key(tmp_path):
    _, path = _tiny_dnn_ckpt(tmp_path, depth=1)
    net = DeepGMM(in_features=20, num_states=4, width=8, depth=2, gmm_dim=3, gmm_components=2)
    with pytest.raises(ConfigError, match="module.init_ckpt.*hidden.1.fc.weight"):
        load_hidden_layers(net, path)
    _, wide = _tiny_dnn_ckpt(tmp_path, depth=3, width=9)
    with pytest.raises(ConfigError, match="same input size and width"):
        load_hidden_layers(net, wide)
    with pytest.raises(ConfigError, match="module.init_ckpt.*not found"):
        load_hidden_layers(net, tmp_path / "missing.ckpt")
    with pytest.raises(ConfigError, match="module.init_ckpt"):
        FrameStateClassifier(net, _opt(), num_states=4, regime="separate")
    with pytest.raises(ConfigError, match="module.regime"):
        FrameStateClassifier(net, _opt(), num_states=4, regime="frozen")
    with pytest.raises(ConfigError, match="module.regime"):
        FrameStateClassifier(
            DNN(20, 4, 8, 1), _opt(), num_states=4, regime="staged", variance_warmup_steps=3
        )


def test_staged_regime_holds_variances_then_trains_them():
    torch.manual_seed(0)
    net = DeepGMM(in_features=20, num_states=4, width=8, depth=1, gmm_dim=3, gmm_components=2)
    module = FrameStateClassifier(
        net, _opt(), num_states=4, regime="staged", variance_warmup_steps=2
    )
    opt = module.configure_optimizers()
    x, y = torch.randn(16, 20), torch.randint(0, 4, (16,))
    before = net.gmm.log_var.detach().clone()
    mu_before = net.gmm.mu.detach().clone()
    for step in range(4):
        with patch.object(
            FrameStateClassifier, "global_step", new_callable=PropertyMock, return_value=step
        ):
            module.on_train_batch_start((x, y), step)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(module(x), y).backward()
        opt.step()
        if step < 2:
            torch.testing.assert_close(net.gmm.log_var.detach(), before)
            assert not torch.equal(net.gmm.mu.detach(), mu_before)  # means train from the start
    assert not torch.equal(net.gmm.log_var.detach(), before)


class _Syncs(TorchDispatchMode):
    """Counts reads of a tensor value back to the host (``.item()``, ``bool()``, ``int()``)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += func.overloadpacket.__name__ == "_local_scalar_dense"
        return func(*args, **(kwargs or {}))


def _step_at(module, batch, step):
    with (
        patch.object(
            FrameStateClassifier, "global_step", new_callable=PropertyMock, return_value=step
        ),
        _Syncs() as syncs,
    ):
        module.training_step(batch, step)
    return syncs.count


def test_training_step_reads_nothing_back_between_finite_checks(monkeypatch):
    """On an accelerator a host read-back stalls the queue: only every FINITE_CHECK_EVERY-th
    step (and the epoch end) reads the non-finite counter; a NaN loss still stops the run."""
    torch.manual_seed(0)
    net = DNN(in_features=20, num_states=4, width=8, depth=1)  # the GMM's floor check is CPU-only
    module = FrameStateClassifier(net, _opt(), num_states=4)
    monkeypatch.setattr(module, "log", lambda *a, **k: None)
    batch = (torch.randn(16, 20), torch.randint(0, 4, (16,)))
    assert [_step_at(module, batch, s) for s in range(3)] == [0, 0, 0]
    assert _step_at(module, batch, FINITE_CHECK_EVERY - 1) == 1
    with torch.no_grad():
        net.output.bias[0] = float("nan")
    assert _step_at(module, batch, FINITE_CHECK_EVERY) == 0  # counted, not read back yet
    with pytest.raises(FloatingPointError, match="non-finite CE in 1 training step"):
        module.on_train_epoch_end()
    dgmm = DeepGMM(20, 4, width=8, depth=1, gmm_dim=3, gmm_components=2, var_floor=None)
    module = FrameStateClassifier(dgmm, _opt(), num_states=4)
    monkeypatch.setattr(module, "log", lambda *a, **k: None)
    assert _step_at(module, batch, 0) == 0  # no floor: nothing to check on the host either


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param(
            [
                "module.regime=staged",
                "module.variance_warmup_steps=5",
                "model.subspace=mean_weight",
                "model.subspace_dim=4",
            ],
            marks=pytest.mark.slow,
        ),
        ["module.regime=separate", "module.init_ckpt=auto"],
    ],
    ids=["staged_subspace", "separate_auto_dnn"],
)
def test_dgmm_experiment_runs(tmp_path, extra):
    _, run_dir = run_experiment(["+experiment=deep_gmm", *TINY, *extra], tmp_path)
    m = _metrics(run_dir)
    assert 0 <= m["test/acc"] <= 1 and m["test/train_steps"] > 0
    # the trivial reference beside it: the synthetic corpus's silence state, ~10 % of frames
    assert 0.03 < m["test/majority_acc"] < 0.3
    if "module.init_ckpt=auto" in extra:
        assert "dnn/test_acc" in m and m["test/trainable_params_m"] < m["test/params_m"]
        assert (run_dir / "checkpoints" / "pretrain_dnn").is_dir()


def test_config_error_exits_2_before_reading_data(tmp_path):
    override = "module.regime=separate"
    proc, _ = run_experiment(["+experiment=deep_gmm", *TINY, override], tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "module.init_ckpt" in proc.stdout + proc.stderr
    assert not (tmp_path / "data" / "embedded").exists()


@pytest.mark.parametrize("dim", ["model.gmm_dim=0", "model.gmm_components=0"])
def test_empty_gmm_is_a_config_error_naming_the_key(tmp_path, dim):
    message = config_error_in_process(["+experiment=deep_gmm", *TINY, dim], tmp_path)
    assert message.startswith(dim.split("=")[0]) and "got 0" in message


@pytest.mark.slow
def test_input_width_mismatch_is_a_config_error(tmp_path):
    proc, _ = run_experiment(
        ["+experiment=deep_gmm", *TINY, "datamodule.left_context=10"], tmp_path, check=False
    )
    assert proc.returncode != 0
    assert "model.in_features" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_default_experiment_far_above_chance(tmp_path):
    """`python run.py +experiment=deep_gmm`: minutes on CPU, frame accuracy far above chance.

    Majority class ~0.10, uniform chance 1/41; the default (seed 42) reaches 0.363 and seeds
    1-3 0.410 +- 0.055 (docs/deep_gmm.md).
    """
    _, run_dir = run_experiment(["+experiment=deep_gmm", "logger=csv"], tmp_path)
    assert _metrics(run_dir)["test/acc"] > 0.3


@pytest.mark.slow
def test_cpu_sweep_preset_yields_its_table(tmp_path):
    _, sweep = run_sweep(
        [
            "+experiment=deep_gmm",
            "+sweep=deep_gmm_matched_cpu",
            *TINY[:6],
            "trainer.max_epochs=1",
            "logger=csv",
        ],
        tmp_path,
    )
    table = (sweep / "summary.md").read_text()
    for model in (
        "deep_gmm/cpu_shallow_gmm",
        "deep_gmm/cpu_shallow_nn",
        "deep_gmm/cpu_dgmm",
        "deep_gmm/cpu_dnn",
    ):
        assert model in table


SWEEPS = [
    "deep_gmm_gmm_dg",
    "deep_gmm_joint_vs_separate",
    "deep_gmm_depth",
    "deep_gmm_matched",
    "deep_gmm_subspace",
    "deep_gmm_pretrained",
]


@pytest.mark.parametrize("sweep", SWEEPS + [s + "_cpu" for s in SWEEPS])
def test_sweep_presets_compose_and_build(sweep):
    """Every swept value of every preset composes and builds its model (on meta: paper sizes too)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from tests.helpers import ROOT

    experiment = "deep_gmm" if sweep.endswith("_cpu") else "deep_gmm_paper"
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        preset = OmegaConf.load(ROOT / "conf" / "sweep" / f"{sweep}.yaml")
        params = {k: str(v).split(",") for k, v in preset.hydra.sweeper.params.items()}
        # Every swept value at least once (the others at their first value), not the full grid.
        first = {k: v[0] for k, v in params.items()}
        jobs = [first] + [{**first, k: v} for k, vals in params.items() for v in vals[1:]]
        for job in jobs:
            overrides = [f"{k}={v}" for k, v in job.items()]
            cfg = compose(
                "config",
                [
                    f"+experiment={experiment}",
                    f"+sweep={sweep}",
                    "datamodule.data_dir=/x",
                    *overrides,
                ],
            )
            with torch.device("meta"):
                net = instantiate(cfg.model)
            assert net.num_states == cfg.datamodule.num_states
            first = next(m for m in net.modules() if isinstance(m, torch.nn.Linear))
            assert first.in_features == 1040
            if sweep.startswith(("deep_gmm_joint", "deep_gmm_subspace", "deep_gmm_pretrained")) or (
                sweep == "deep_gmm_gmm_dg"
            ):
                assert (
                    cfg.module.init_ckpt == "auto"
                    and cfg.pretrain.model.depth == cfg.model.depth + 1
                )
            if sweep.startswith(("deep_gmm_depth", "deep_gmm_matched")):
                assert cfg.module.init_ckpt is None  # Tables 3, 4: random init
    GlobalHydra.instance().clear()
