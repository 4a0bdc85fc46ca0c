"""One command for every figure: ``python -m benchmarks.report`` writes docs/results.md.

    python -m benchmarks.report                 # everything, 3 seeds (about 2 h on 2 cores)
    python -m benchmarks.report --quick         # short budgets, 1 seed, few repeats (minutes)
    python -m benchmarks.report --only results  # or: benchmarks
    python -m benchmarks.report --render        # rebuild the tables from the last records only
    python -m benchmarks.report --only benchmarks --names deep_gmm_speed   # rerun some rows

With ``--names``, only the named benchmarks / result rows run; every row without a record in
``--work`` keeps its line from the current docs/results.md, and the header names the rows the
last pass measured (the kept rows carry their own machine and load, or the header of the pass
that made them, quoted).

1. **benchmarks**: every CPU benchmark, one after another (never beside a training job: they
   time), each writing a JSON record with the machine that measured it;
2. **results**: every row of ``benchmarks/paper_runs.py`` as a Hydra multirun over the seeds,
   two presets at a time; each row is the mean +- std over seeds beside its trivial reference
   from the same jobs and the paper's number.

docs/results.md gets a header (date, CPU model, cores, torch threads, torch, BLAS, device) and
one marked block per section; the README's blocks of the same names are copied from it (a test
checks that they match), so no figure in the README is typed by hand. The ``gpu-check`` block
comes from ``benchmarks/gpu_check.sh`` on a GPU machine and is kept as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import describe, machine  # noqa: E402
from benchmarks.paper_runs import RUNS, PaperRun, job_metrics  # noqa: E402
from benchmarks.records import (  # noqa: E402
    load_records,
    read_section,
    render_records,
    replace_section,
)
from core.denormals import flush_denormals  # noqa: E402

# (script, full-size arguments, --quick arguments); every one also gets --json.
BENCHMARKS: tuple[tuple[str, list[str], list[str]], ...] = (
    ("sleep_tsr_preprocessing", [], ["--hours", "4", "--repeats", "1"]),
    ("sleep_tsr_train_step", [], ["--rounds", "3", "--warmup", "1", "--skip-loop"]),
    ("deep_gmm_speed", ["--breakdown"], ["--repeats", "4", "--naive-batch", "0", "--no-two-mm"]),
    ("sd_mae_speed", [], ["--steps", "1", "--methods", "sdmae"]),
    (
        "frailty_preprocessing",
        ["--loop-participants", "10"],
        ["--participants", "20", "--loop-participants", "2"],
    ),
    ("frailty_train_step", [], ["--steps", "5"]),
    ("lowlight_gp_speed", [], ["--repeats", "1", "--skip-gpytorch"]),
)
SECTIONS = ("benchmarks", "results")
EARLIER = "Kept rows may come from an earlier pass:"


def run_benchmarks(work: Path, quick: bool, names: set[str] | None = None) -> None:
    records = work / "records"
    records.mkdir(parents=True, exist_ok=True)
    for name, full, short in BENCHMARKS:
        if names is not None and name not in names:
            continue
        argv = [
            sys.executable,
            str(ROOT / "benchmarks" / f"{name}.py"),
            *(short if quick else full),
        ]
        argv += ["--json", str(records / f"{name}.json")]
        t0 = time.perf_counter()
        with (work / f"{name}.log").open("w") as log:
            ok = (
                subprocess.run(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode == 0
            )
        print(
            f"{'ok  ' if ok else 'FAIL'} {name:26s} {time.perf_counter() - t0:6.0f} s", flush=True
        )


def run_paper(run: PaperRun, work: Path, quick: bool, seeds: str, threads: int) -> bool:
    """The row's preset as one multirun over ``seeds``; job dirs under ``work/runs/<name>``."""
    sweep = work / "runs" / run.name
    argv = [
        sys.executable, str(ROOT / "run.py"), "-m", *run.overrides(short=quick), f"seed={seeds}",
        "logger=csv", f"hydra.sweep.dir={sweep}",
    ]  # fmt: skip
    t0 = time.perf_counter()
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    with (work / f"{run.name}.log").open("w") as log:
        ok = (
            subprocess.run(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
            == 0
        )
    print(
        f"{'ok  ' if ok else 'FAIL'} {run.name:26s} {time.perf_counter() - t0:6.0f} s  "
        f"python run.py {' '.join(argv[2:-2])}",
        flush=True,
    )
    return ok


def mean_std(values: list[float], metric: str) -> str:
    if not values:
        return "-"
    unit = " dB" if metric.endswith("psnr") else ""
    digits = 2 if unit else (4 if max(abs(v) for v in values) < 0.01 else 3)
    if len(values) == 1:
        return f"{values[0]:.{digits}f}{unit} (1 seed)"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}{unit}"


def job_minutes(work: Path) -> str:
    """Summed wall time of the finished result jobs (their metrics.json ``duration_s``)."""
    seconds = [
        json.loads(p.read_text()).get("duration_s", 0.0)
        for p in (work / "runs").glob("*/**/metrics.json")
    ]
    return f"{len(seconds)} jobs, {sum(seconds) / 60:.0f} min"


def seed_of(job: Path) -> str:
    record = json.loads((job / "metrics.json").read_text())
    found = [o.split("=", 1)[1] for o in record.get("overrides", []) if o.startswith("seed=")]
    return found[0] if found else "?"


def _kept_row(previous: str | None, cell: str) -> str | None:
    """The line of an earlier table whose second cell is ``cell`` (a row not rerun this pass)."""
    for line in (previous or "").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 1 and cells[1] == cell:
            return line
    return None


def render_results(work: Path, quick: bool, previous: str | None = None) -> str:
    """Mean +- std over the finished jobs of every row, beside its reference and the paper.

    A row with no job in ``work`` keeps its line from ``previous`` (the current block) if any."""
    rows = [
        "| paper | run | command | seeds | metric | ours (mean ± std) | trivial reference | paper |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in RUNS:
        jobs = sorted(p.parent for p in (work / "runs" / run.name).glob("**/metrics.json"))
        done = [(j, m) for j in jobs if (m := job_metrics(j)) is not None]
        if not jobs and (kept := _kept_row(previous, run.name)):
            rows.append(kept)
            continue
        seeds = ",".join(sorted(seed_of(j) for j, _ in done)) or "none finished"
        cells = []
        for metric in (run.metric, *run.extra_metrics):
            cells.append(
                f"{metric.split('/')[-1]} {mean_std([m[metric] for _, m in done if metric in m], metric)}"
            )
        refs = [v for j, m in done if (v := run.reference(j, m).get(run.metric)) is not None]
        paper = "-" if run.paper_value is None else f"{run.paper_value:g}"
        command = f"`python run.py -m {' '.join(run.overrides(short=quick))} seed={seeds if done else '1,2,3'}`"
        rows.append(
            f"| {run.paper} | {run.name} | {command} | {seeds} | {run.metric} | "
            f"{'; '.join(cells)} | {run.reference_label}: {mean_std(refs, run.metric)} | "
            f"{paper} ({run.paper_source}) |"
        )
    return "\n".join(rows)


def render_benchmarks(records: list[dict], previous: str | None) -> str:
    """The records' rows, plus the earlier rows of benchmarks that have no record this pass."""
    table = render_records(records).splitlines()
    measured = {r["benchmark"] for r in records}
    for name, _, _ in BENCHMARKS:
        if name not in measured and (kept := _kept_row(previous, f"`{name}`")):
            table.append(kept)
    head, rows = table[:2], table[2:]
    return "\n".join(head + sorted(rows, key=lambda line: line.split("|")[1:3]))


def earlier_passes(earlier_header: str, names: set[str]) -> list[str]:
    """The kept rows' provenance: one line per earlier pass, newest first, leaving out a pass that
    ran only rows this pass reruns (none of its rows is left)."""
    lines = earlier_header.splitlines()
    passes = [" ".join(lines[:2])]
    passes += [line.removeprefix(EARLIER).strip() for line in lines[2:] if line.startswith(EARLIER)]
    kept = []
    for text in passes:
        only = re.search(r"\(only ([^;)]+);", text)
        if only and {n.strip() for n in only.group(1).split(",")} <= names:
            continue
        kept.append(text)
    return kept


def write(out_md: Path, readme: Path | None, work: Path, quick: bool, header: str) -> None:
    text = out_md.read_text() if out_md.exists() else "# Results\n"
    if not text.startswith("# Results"):
        text = "# Results\n\n" + text
    text = replace_section(text, "report-header", header)
    records = load_records(work / "records")
    bodies = {
        "benchmarks": render_benchmarks(records, read_section(text, "benchmarks")),
        "results": render_results(work, quick, read_section(text, "results")),
    }
    for name, body in bodies.items():
        text = replace_section(text, name, body)
    out_md.write_text(text)
    print(f"wrote {out_md}")
    if readme and readme.exists():
        copy_into_readme(text, readme)


def copy_into_readme(results_text: str, readme: Path) -> None:
    """Copy docs/results.md's blocks into the README's blocks of the same names (opt-in)."""
    readme_text = readme.read_text()
    for name in ("report-header", *SECTIONS, "gpu-check"):
        block = read_section(results_text, name)
        if block is not None and read_section(readme_text, name) is not None:
            readme_text = replace_section(readme_text, name, block)
    readme.write_text(readme_text)
    print(f"copied the blocks into {readme}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short budgets, 1 seed, few repeats")
    ap.add_argument("--only", nargs="*", choices=SECTIONS, default=list(SECTIONS))
    ap.add_argument("--seeds", default=None, help="default 1,2,3 (quick: 1)")
    ap.add_argument("--jobs", type=int, default=2, help="paper presets at a time")
    ap.add_argument("--work", default="outputs/report")
    ap.add_argument("--out", default="docs/results.md")
    ap.add_argument("--readme", default="README.md", help="'' to leave the README alone")
    ap.add_argument("--render", action="store_true", help="no runs: rebuild from the records")
    ap.add_argument(
        "--names",
        nargs="*",
        default=None,
        help="run only these benchmarks / result rows; the others keep their current lines",
    )
    args = ap.parse_args()
    names = set(args.names) if args.names is not None else None
    known = {b[0] for b in BENCHMARKS} | {r.name for r in RUNS}
    if names and (unknown := names - known):
        ap.error(f"--names: unknown {sorted(unknown)}; allowed: {sorted(known)}")
    seeds = args.seeds or ("1" if args.quick else "1,2,3")
    work = (ROOT / args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    flush_denormals(True)  # as every run and benchmark it starts does, so the header says so
    info = machine("cpu")
    t0 = time.perf_counter()
    if not args.render:
        if "benchmarks" in args.only:
            run_benchmarks(work, args.quick, names)
        if "results" in args.only:
            threads = max(1, (os.cpu_count() or 1) // args.jobs)
            runs = [r for r in RUNS if names is None or r.name in names]
            with ThreadPoolExecutor(max_workers=args.jobs) as pool:
                list(pool.map(lambda r: run_paper(r, work, args.quick, seeds, threads), runs))
    mode = "quick (short budgets, not for the README)" if args.quick else "full"
    ran = "nothing (rendered from the last records)" if args.render else ", ".join(args.only)
    if names is not None and not args.render:
        ran += f" (only {', '.join(sorted(names))}; the other rows are kept from an earlier pass)"
    header = (
        f"Generated by `python -m benchmarks.report{' --quick' if args.quick else ''}` "
        f"({mode}, seeds {seeds}); the last pass ran {ran} in "
        f"{time.perf_counter() - t0:.0f} s; the result rows are {job_minutes(work)} of job time "
        f"(two jobs at a time).\n"
        f"Machine: {describe(info)}."
    )
    out_md = (ROOT / args.out).resolve()
    earlier = read_section(out_md.read_text(), "report-header") if out_md.exists() else None
    if names is not None and not args.render and earlier:
        header += "".join(f"\n{EARLIER} {p}" for p in earlier_passes(earlier, names))
    write(out_md, (ROOT / args.readme) if args.readme else None, work,
          args.quick, header)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
