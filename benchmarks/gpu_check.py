"""Everything a CUDA GPU must show, in one run of at most ~8 minutes: ``benchmarks/gpu_check.sh``.

1. every paper's ``debug=fast_dev_run`` on the GPU (the runs in parallel);
2. the two CPU speed ratios (sleep_tsr, deep_gmm) on that machine's own CPU, another x86 model
   than the development machine's, beside the runs (single-threaded, so they do not compete);
3. every benchmark with ``--device cuda``, one after another (alone on the GPU).

Each step's log and JSON record go to ``--work``; the figures are rendered into the
``gpu-check`` block of docs/results.md (and copied to ``$OUT`` when that is set). A failed step
is reported and the others go on; the exit status is 1 when any failed.

``--dry-run`` runs the same steps on the CPU at smoke size: each run only composes its config
(``--cfg job``) and each benchmark runs a few tiny steps. The test suite runs it, so the script
cannot rot on machines without a GPU.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.records import load_records, render_records, replace_section  # noqa: E402

PRESETS = ("example", "sleep_tsr", "deep_gmm", "sd_mae", "frailty", "lowlight_gp")
# fast_dev_run limits batches, not a pipeline's own loops: lowlight_gp would enhance every test
# image at all 26 levels with the GP (minutes); two levels of one image show the path works.
EXTRA = {"lowlight_gp": ["lowlight.levels=[0,12]", "datamodule.n_test=1"]}


@dataclass
class Step:
    """One command: its full-size arguments and its smoke-size (dry-run) arguments."""

    name: str
    script: str
    args: list[str]
    smoke: list[str] = field(default_factory=list)
    timeout: int = 150


def run_steps(device: str) -> list[Step]:
    """``debug=fast_dev_run`` of every preset on ``device``."""
    accel = "gpu" if device == "cuda" else "cpu"
    return [
        Step(
            f"run_{p}",
            "run.py",
            [f"+experiment={p}", "debug=fast_dev_run", f"debug.trainer.accelerator={accel}"]
            + EXTRA.get(p, []),
            smoke=["--cfg", "job"],
            timeout=240,
        )
        for p in PRESETS
    ]


# deep_gmm_speed at a toy size: the dry run checks the arguments and the code path, not a figure
GMM_SMOKE = [
    "--batch",
    "8",
    "--in-features",
    "32",
    "--states",
    "24",
    "--dim",
    "8",
    "--repeats",
    "1",
]

CPU_STEPS = [
    Step(
        "cpu_sleep_tsr_train_step",
        "benchmarks/sleep_tsr_train_step.py",
        ["--device", "cpu", "--rounds", "6", "--warmup", "1", "--skip-loop", "--require-kernels"],
        smoke=["--batch", "2", "--seq-len", "2", "--rounds", "1", "--warmup", "0"],
        timeout=240,
    ),
    Step(
        "cpu_deep_gmm_speed",
        "benchmarks/deep_gmm_speed.py",
        [
            "--device",
            "cpu",
            "--repeats",
            "8",
            "--naive-batch",
            "0",
            "--no-two-mm",
            "--require-kernels",
        ],
        smoke=GMM_SMOKE,
        timeout=240,
    ),
]

GPU_STEPS = [
    Step(
        "cuda_sleep_tsr_train_step",
        "benchmarks/sleep_tsr_train_step.py",
        ["--device", "cuda", "--rounds", "10", "--amp", "off"],
        smoke=["--batch", "2", "--seq-len", "2", "--rounds", "1", "--warmup", "0", "--skip-loop"],
    ),
    Step(
        "cuda_sleep_tsr_train_step_bf16",
        "benchmarks/sleep_tsr_train_step.py",
        ["--device", "cuda", "--rounds", "10", "--amp", "bf16", "--skip-loop"],
        smoke=["--batch", "2", "--seq-len", "2", "--rounds", "1", "--warmup", "0", "--skip-loop"],
    ),
    Step(
        "cuda_deep_gmm_speed",
        "benchmarks/deep_gmm_speed.py",
        ["--device", "cuda", "--repeats", "20"],
        smoke=GMM_SMOKE,
    ),
    Step(
        "cuda_sd_mae_speed",
        "benchmarks/sd_mae_speed.py",
        ["--device", "cuda", "--batch", "256", "--steps", "5"],
        smoke=["--batch", "1", "--steps", "1", "--methods", "sdmae", "--ratios", "0,0.75"],
    ),
    Step(
        "cuda_frailty_train_step",
        "benchmarks/frailty_train_step.py",
        ["--device", "cuda", "--steps", "30"],
        smoke=["--batch", "2", "--steps", "1"],
    ),
    Step(
        "cuda_lowlight_gp_speed",
        "benchmarks/lowlight_gp_speed.py",
        ["--device", "cuda", "--repeats", "2"],
        smoke=["--repeats", "1", "--k", "20", "--images", "astronaut", "--skip-gpytorch"],
    ),
    Step(
        "cuda_sleep_tsr_preprocessing",
        "benchmarks/sleep_tsr_preprocessing.py",
        ["--device", "cuda", "--repeats", "2"],
        smoke=["--hours", "0.5", "--repeats", "1"],
    ),
    Step(
        "cuda_frailty_preprocessing",
        "benchmarks/frailty_preprocessing.py",
        ["--device", "cuda", "--loop-participants", "3"],
        smoke=["--participants", "1", "--minutes", "1"],
    ),
]


def command(step: Step, work: Path, dry_run: bool) -> list[str]:
    """The argv of ``step``; in a dry run the device becomes cpu and the smoke sizes apply."""
    args = list(step.args)
    if dry_run:
        args = ["cpu" if a == "cuda" else a for a in args]
        args = [a.replace("accelerator=gpu", "accelerator=cpu") for a in args]
        if step.script != "run.py":  # smoke sizes override the full ones (argparse: last wins)
            args += step.smoke
    if step.script == "run.py":
        args.append(f"hydra.run.dir={work / 'runs' / step.name}")
        if dry_run:
            args += step.smoke
    else:
        args += ["--json", str(work / "records" / f"{step.name}.json")]
    return [sys.executable, str(ROOT / step.script), *args]


def execute(step: Step, work: Path, dry_run: bool) -> tuple[str, bool, float]:
    """Run one step with its log in ``work/logs``; (name, ok, seconds)."""
    argv = command(step, work, dry_run)
    log = work / "logs" / f"{step.name}.log"
    t0 = time.perf_counter()
    env = dict(
        os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2")
    )
    with log.open("w") as out:
        out.write(" ".join(argv) + "\n")
        out.flush()
        try:
            ok = subprocess.run(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env,
                                timeout=step.timeout).returncode == 0  # fmt: skip
        except subprocess.TimeoutExpired:
            out.write(f"\nTIMEOUT after {step.timeout} s\n")
            ok = False
    seconds = time.perf_counter() - t0
    print(f"{'ok  ' if ok else 'FAIL'} {step.name:34s} {seconds:6.1f} s   log: {log}", flush=True)
    return step.name, ok, seconds


def publish(results: list[tuple[str, str, float]], work: Path, out_md: Path, note: str) -> None:
    """Render the gpu-check block from what has run so far (and copy it to ``$OUT``), so that a
    check stopped from outside still leaves every finished step's figures behind."""
    table = ["| step | status | seconds |", "|---|---|---|"]
    table += [f"| {n} | {status} | {s:.0f} |" for n, status, s in results]
    body = "\n\n".join([note, "\n".join(table), render_records(load_records(work / "records"))])
    text = out_md.read_text() if out_md.exists() else "# Results\n"
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text(replace_section(text, "gpu-check", body))
    if out := os.environ.get("OUT"):
        copy = Path(out) / "results.md"
        if not (copy.exists() and copy.samefile(out_md)):  # --results may point into $OUT
            shutil.copy(out_md, copy)
        for part in ("logs", "records"):  # not the run dirs: checkpoints and images are large
            shutil.make_archive(str(Path(out) / f"gpu_check_{part}"), "gztar", work / part, ".")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU, smoke sizes, configs only")
    ap.add_argument("--work", default="outputs/gpu_check", help="logs, records and run dirs")
    ap.add_argument(
        "--results", default="docs/results.md", help="file whose gpu-check block is rewritten"
    )
    ap.add_argument("--only", nargs="*", default=None, help="step names to run (default: all)")
    ap.add_argument(
        "--budget", type=float, default=450, help="seconds; later steps are skipped, not started"
    )
    args = ap.parse_args()
    device = "cpu" if args.dry_run else "cuda"
    work = (ROOT / args.work).resolve()
    out_md = (ROOT / args.results).resolve()
    shutil.rmtree(work, ignore_errors=True)
    (work / "logs").mkdir(parents=True)
    (work / "records").mkdir()
    runs, cpu, gpu = run_steps(device), CPU_STEPS, GPU_STEPS
    if args.only is not None:
        runs, cpu, gpu = ([s for s in group if s.name in args.only] for group in (runs, cpu, gpu))
    t0 = time.perf_counter()
    note = (
        f"`bash benchmarks/gpu_check.sh{' --dry-run' if args.dry_run else ''}` "
        f"({'CPU, smoke sizes' if args.dry_run else 'CUDA'}), started "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}."
    )
    results: list[tuple[str, str, float]] = []

    def record(name: str, ok: bool, seconds: float) -> None:
        results.append((name, "ok" if ok else "**failed**", seconds))
        publish(results, work, out_md, note)

    with ThreadPoolExecutor(max_workers=max(1, len(runs) + len(cpu))) as pool:
        for name, ok, seconds in pool.map(lambda s: execute(s, work, args.dry_run), [*runs, *cpu]):
            record(name, ok, seconds)
    for step in gpu:
        if time.perf_counter() - t0 > args.budget:
            results.append((step.name, f"skipped (over the {args.budget:.0f} s budget)", 0.0))
            print(f"skip {step.name}: over the budget", flush=True)
            continue
        record(*execute(step, work, args.dry_run))
    publish(results, work, out_md, note + f" {time.perf_counter() - t0:.0f} s in all.")
    failed = [name for name, status, _ in results if status != "ok"]
    print(f"wrote the gpu-check block of {out_md}; not ok: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
