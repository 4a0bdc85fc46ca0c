"""Fit, test the best checkpoint, then write the paper's Table 3 and Fig. 4 for this run."""

from __future__ import annotations

import json
import logging
from typing import Any

from experiments.frailty.metrics import plot_confusion, table3, table3_markdown
from experiments.runner.context import RunContext
from experiments.runner.pipeline import fit_and_test

log = logging.getLogger(__name__)


def fit_test_report(ctx: RunContext) -> dict[str, Any]:
    """The default fit-then-test, plus ``table3.md``, ``test_confusion.json`` and
    ``figures/confusion_matrix.png`` in the job directory (the PNG also goes to wandb)."""
    metrics = fit_and_test(ctx)
    cm = getattr(ctx.module, "test_confusion", None)
    if cm is None:
        return metrics
    names = tuple(ctx.module.class_names)
    split = getattr(ctx.datamodule, "split", "?")
    table = table3(cm, names)
    md = f"# DeepConvLSTM on the test split (split={split})\n\n" + table3_markdown(table, names)
    (ctx.output_dir / "table3.md").write_text(md)
    (ctx.output_dir / "test_confusion.json").write_text(
        json.dumps({"classes": list(names), "confusion": cm.tolist(), "split": split}, indent=1)
    )
    png = plot_confusion(
        cm, names, ctx.figures_dir() / "confusion_matrix.png", f"DeepConvLSTM, split={split}"
    )
    ctx.log_figure("test/confusion_matrix", png)
    log.info("Table 3 (split=%s):\n%s", split, md)
    return metrics
