"""What a pipeline's own loops and stage trainers get under the debug presets."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from experiments.runner.context import RunContext


def _ctx(trainer: dict, debug: dict | None = None) -> RunContext:
    cfg = OmegaConf.create({"trainer": trainer, "debug": debug})
    return RunContext(cfg, Path("."), None, None, lambda **kw: kw)


def test_loops_outside_the_trainer_follow_its_limits():
    items = list(range(8))
    assert _ctx({"fast_dev_run": True}).limit(items) == [0]
    assert _ctx({"fast_dev_run": 3}).limit(items) == [0, 1, 2]
    assert _ctx({"overfit_batches": 1, "limit_test_batches": 5}).limit(items) == [0]
    assert _ctx({"limit_test_batches": 5}).limit(items) == [0, 1, 2, 3, 4]
    assert _ctx({"limit_test_batches": 0.2}).limit(items[:4]) == [0]  # never 0 of a small set
    assert _ctx({"limit_val_batches": 2}).limit(items, stage="val") == [0, 1]
    assert _ctx({"limit_test_batches": 1.0}).limit(items) == items
    assert _ctx({}).limit(items) == items


def test_stage_epochs_are_capped_at_the_debug_presets():
    limit = _ctx({"max_epochs": 3}, {"trainer": {"max_epochs": 3}})
    assert limit.make_trainer(stage="pretrain", max_epochs=30)["max_epochs"] == 3
    assert limit.make_trainer(stage="probe", max_epochs=2)["max_epochs"] == 2
    assert _ctx({"max_epochs": 3}).make_trainer(max_epochs=30)["max_epochs"] == 30  # no preset
