"""Per-split mean +- std of a frailty splits sweep beside the trivial majority-class rate.

    python -m experiments.frailty.report outputs/<task>/multiruns/<date>/<time>

Reads each job's ``metrics.json`` and ``test_confusion.json``. The majority-class rate is the
test accuracy of always answering the class most frequent in the job's *training* windows
(``test/majority_acc``; for runs logged before that metric existed it is recomputed from the
training counts in ``run.log``), so every row sits beside its own trivial reference.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

METRICS = (
    "test/acc",
    "test/majority_acc",
    "test/balanced_acc",
    "test/f1_weighted",
    "test/subject_acc",
    "val/acc_best",
)
_TRAIN = re.compile(r"robust/pre-frail/frail: train \[(\d+), (\d+), (\d+)\]")


def _majority(job: Path) -> float | None:
    match = _TRAIN.search((job / "run.log").read_text()) if (job / "run.log").is_file() else None
    cm_file = job / "test_confusion.json"
    if match is None or not cm_file.is_file():
        return None
    cm = np.asarray(json.loads(cm_file.read_text())["confusion"])
    return float(cm.sum(axis=1)[int(np.argmax([int(g) for g in match.groups()]))] / cm.sum())


def collect(sweep_dir: str | Path) -> dict[str, dict[str, list[float]]]:
    """``{split: {metric: [value per seed]}}`` over the finished jobs."""
    out: dict[str, dict[str, list[float]]] = {}
    for path in sorted(Path(sweep_dir).glob("*/metrics.json")):
        rec = json.loads(path.read_text())
        if rec.get("status") != "ok":
            continue
        m = dict(rec["metrics"])
        if "test/majority_acc" not in m and (value := _majority(path.parent)) is not None:
            m["test/majority_acc"] = value
        split = json.loads((path.parent / "test_confusion.json").read_text())["split"]
        rows = out.setdefault(split, {k: [] for k in METRICS})
        for k in METRICS:
            if k in m:
                rows[k].append(float(m[k]))
    return out


def markdown(results: dict[str, dict[str, list[float]]]) -> str:
    head = "| split | seeds | " + " | ".join(METRICS) + " |"
    lines = [head, "|" + "---|" * (len(METRICS) + 2)]
    for split, rows in sorted(results.items()):
        n = max(len(v) for v in rows.values())
        cells = [
            f"{np.mean(v):.3f} ± {np.std(v, ddof=1):.3f}" if len(v) > 1 else "n/a"
            for v in rows.values()
        ]
        lines.append(f"| {split} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir")
    print(markdown(collect(parser.parse_args(argv).sweep_dir)), end="")


if __name__ == "__main__":
    main()
