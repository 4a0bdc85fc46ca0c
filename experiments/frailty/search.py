"""mcfly-style random architecture search as a Hydra Optuna sweep (``+sweep=frailty_arch``).

The paper sampled DeepConvLSTM architectures with mcfly and kept the best on validation.
``conf/sweep/frailty_arch*.yaml`` hand the draw to hydra-optuna-sweeper's ``RandomSampler``
(mcfly's search is plain random search): the number of conv / LSTM layers and every layer's
size are sampled as separate scalars and :func:`mcfly_deepconvlstm` keeps the first
``conv_layers`` / ``lstm_layers`` of them, which is the same distribution as mcfly's
variable-length lists. ``best`` ranks the finished jobs of a sweep on ``val/acc_best``.

    python run.py -m +experiment=frailty +sweep=frailty_arch
    python -m experiments.frailty.search best outputs/frailty/multiruns/<date>/<time>
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from models.frailty import DeepConvLSTM


def mcfly_deepconvlstm(
    conv_layers: int,
    conv_filters: Sequence[int],
    lstm_layers: int,
    lstm_units: Sequence[int],
    **kwargs: Any,
) -> DeepConvLSTM:
    """DeepConvLSTM from one Optuna draw: the first ``conv_layers`` filter counts and the
    first ``lstm_layers`` unit counts (each drawn for every possible layer)."""
    conv, lstm = list(conv_filters), list(lstm_units)
    if not 1 <= conv_layers <= len(conv) or not 1 <= lstm_layers <= len(lstm):
        raise ValueError(
            f"conv_layers={conv_layers} / lstm_layers={lstm_layers} outside the "
            f"{len(conv)} / {len(lstm)} sampled sizes"
        )
    return DeepConvLSTM(conv_filters=conv[:conv_layers], lstm_units=lstm[:lstm_layers], **kwargs)


def best_job(sweep_dir: str | Path, metric: str = "val/acc_best") -> list[dict]:
    """Finished jobs of a sweep sorted best first on ``metric`` (from each metrics.json)."""
    rows = []
    for path in sorted(Path(sweep_dir).glob("*/metrics.json")):
        rec = json.loads(path.read_text())
        if rec.get("status") != "ok" or metric not in rec.get("metrics", {}):
            continue
        rows.append({"job": path.parent.name, "overrides": rec.get("overrides"), **rec["metrics"]})
    if not rows:
        raise SystemExit(f"no finished job with {metric} under {sweep_dir}")
    return sorted(rows, key=lambda r: -float(r[metric]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("best", help="rank a finished sweep on validation")
    b.add_argument("sweep_dir")
    b.add_argument("--metric", default="val/acc_best")
    a = parser.parse_args(argv)
    rows = best_job(a.sweep_dir, a.metric)
    keys = [a.metric, "test/acc", "test/balanced_acc", "test/f1_frail"]
    for i, r in enumerate(rows):
        figures = "  ".join(f"{k}={r[k]:.3f}" for k in keys if k in r)
        print(f"{'BEST ' if i == 0 else '     '}{r['job']}: {figures}  {r['overrides']}")


if __name__ == "__main__":
    main()
