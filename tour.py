"""A tour of the five papers on the embedded data: each preset at a small budget, then one table.

    python tour.py [--jobs 2] [--out outputs/tour]

Every row is a real run of ``python run.py +experiment=<preset>`` with a short budget (the
overrides are printed), two at a time on a 2-core machine. The table puts our figure beside its
trivial reference from the same run (majority class, dark input, random-init encoder) and the
paper's number, with one line on what the difference means. One seed each: a tour, not a
result; ``python -m benchmarks.report`` gives the >= 3-seed figures of docs/results.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.common import cpu_model
from benchmarks.paper_runs import RUNS, PaperRun, job_metrics

ROOT = Path(__file__).resolve().parent


def run_one(
    run: PaperRun, out: Path, seed: int, threads: int
) -> tuple[PaperRun, Path, float, bool]:
    """One short run of ``run``'s preset; its log is ``<out>/<name>.log``."""
    job = out / run.name
    argv = [
        sys.executable, str(ROOT / "run.py"), *run.overrides(short=True), f"seed={seed}",
        "logger=csv", f"hydra.run.dir={job}",
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    t0 = time.perf_counter()
    with (out / f"{run.name}.log").open("w") as log:
        ok = (
            subprocess.run(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
            == 0
        )
    seconds = time.perf_counter() - t0
    print(
        f"{'done' if ok else 'FAILED'} {run.name:16s} {seconds:5.0f} s  "
        f"python run.py {' '.join(argv[2:-2])}",
        flush=True,
    )
    return run, job, seconds, ok


def fmt(value: float | None, metric: str) -> str:
    if value is None:
        return "-"
    return f"{value:.2f} dB" if metric.endswith("psnr") else f"{value:.3f}"


def table(results: list[tuple[PaperRun, Path, float, bool]]) -> str:
    rows = [
        "| paper | run | metric | ours (embedded, short) | trivial reference | paper | what the difference means |",
        "|---|---|---|---|---|---|---|",
    ]
    for run, job, _, ok in results:
        m = job_metrics(job) if ok else None
        ours = m.get(run.metric) if m else None
        ref = run.reference(job, m).get(run.metric) if m else None
        paper = fmt(run.paper_value, run.metric) if run.paper_value is not None else "-"
        rows.append(
            f"| {run.paper} | {run.name} | {run.metric} | "
            f"{fmt(ours, run.metric) if m else 'failed (see log)'} | "
            f"{fmt(ref, run.metric)} ({run.reference_label}) | {paper} ({run.paper_source}) | "
            f"{run.meaning} |"
        )
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2, help="runs at a time (default 2)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="outputs/tour")
    ap.add_argument("--only", nargs="*", default=None, help="run names (default: all)")
    args = ap.parse_args()
    out = (ROOT / args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    runs = [r for r in RUNS if args.only is None or r.name in args.only]
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    print(f"tour: {len(runs)} short runs, {args.jobs} at a time, on {cpu_model()}; logs in {out}")
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(lambda r: run_one(r, out, args.seed, threads), runs))
    text = table(results)
    (out / "tour.md").write_text(
        f"Tour on {cpu_model()}, seed {args.seed}, {time.perf_counter() - t0:.0f} s.\n\n{text}\n"
    )
    print()
    print(text)
    print(f"\n{time.perf_counter() - t0:.0f} s in all; table in {out / 'tour.md'}")
    return 0 if all(ok for *_, ok in results) else 1


if __name__ == "__main__":
    sys.exit(main())
