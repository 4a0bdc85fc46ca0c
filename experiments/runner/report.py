"""Summarise a sweep directory: one row per job, mean +- std per swept setting, plots.

Written by the Hydra callback when a multirun ends; rebuild any time with
``python -m experiments.runner.report <sweep_dir>``.
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from experiments.runner.io import METRICS_FILE, read_json

log = logging.getLogger(__name__)

STATUS, ERROR, JOB = "status", "error", "job"


@dataclass
class ReportSettings:
    """The ``report:`` block of the jobs' config."""

    main_metric: str | None = None
    metrics: list[str] | None = None
    repeat_keys: list[str] = field(default_factory=lambda: ["seed"])
    pool_keys: list[str] = field(default_factory=list)
    pool: Callable[[list[Path]], dict[str, float]] | None = None
    paper: list[dict[str, Any]] = field(default_factory=list)
    descending: list[str] = field(default_factory=list)  # swept keys listed largest first

    @classmethod
    def from_config(cls, cfg: DictConfig | None) -> ReportSettings:
        if cfg is None or cfg.get("report") is None:
            return cls()
        rep = cfg.report
        pool = instantiate(rep.pool) if rep.get("pool") else None
        return cls(
            main_metric=rep.get("main_metric"),
            metrics=list(rep.metrics) if rep.get("metrics") else None,
            repeat_keys=list(rep.get("repeat_keys", ["seed"]) or []),
            pool_keys=list(rep.get("pool_keys") or []),
            pool=pool,
            paper=OmegaConf.to_container(rep.paper) if rep.get("paper") else [],
            descending=list(rep.get("descending") or []),
        )


def parse_value(text: str) -> Any:
    """``"1e-3"`` -> 0.001, ``"3"`` -> 3, anything else stays a string."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """``["+experiment=x", "seed=2"]`` -> ``{"experiment": "x", "seed": 2}``."""
    out: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            continue
        key, value = item.split("=", 1)
        out[key.lstrip("+~")] = parse_value(value)
    return out


def job_dirs(sweep_dir: Path) -> list[Path]:
    """Job folders of a sweep (those holding Hydra's ``.hydra/``), in job-number order."""
    dirs = [p for p in sweep_dir.iterdir() if p.is_dir() and (p / ".hydra").is_dir()]
    return sorted(
        dirs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name)
    )


def load_jobs(sweep_dir: Path) -> tuple[pd.DataFrame, DictConfig | None]:
    """One row per job: its overrides, status, error and final metrics; plus one job's config."""
    rows: list[dict[str, Any]] = []
    config: DictConfig | None = None
    for jd in job_dirs(sweep_dir):
        overrides_file = jd / ".hydra" / "overrides.yaml"
        overrides = OmegaConf.load(overrides_file) if overrides_file.exists() else []
        row: dict[str, Any] = {JOB: jd.name, "_dir": str(jd)}
        row.update(parse_overrides([str(o) for o in overrides]))
        record = read_json(jd / METRICS_FILE)
        if record is None:
            row[STATUS], row[ERROR] = "missing", "no metrics.json (killed, or still running)"
        else:
            row[STATUS] = record.get("status", "unknown")
            row[ERROR] = _short_error(record.get("error"))
            for key, value in (record.get("metrics") or {}).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    row[key] = float(value)
        rows.append(row)
        if config is None and (jd / ".hydra" / "config.yaml").exists():
            config = OmegaConf.load(jd / ".hydra" / "config.yaml")
    return pd.DataFrame(rows), config


def _short_error(error: str | None) -> str:
    if not error:
        return ""
    line = str(error).strip().splitlines()[-1] if str(error).strip() else ""
    return line[:200]


def _metric_columns(
    jobs: pd.DataFrame, settings: ReportSettings, param_cols: list[str]
) -> list[str]:
    if settings.metrics:
        return list(settings.metrics)
    skip = set(param_cols) | {JOB, "_dir", STATUS, ERROR}
    numeric = [c for c in jobs.columns if c not in skip and pd.api.types.is_numeric_dtype(jobs[c])]
    preferred = [c for c in numeric if c.startswith("test/") or c.endswith("_best")]
    return preferred or numeric


def swept_keys(jobs: pd.DataFrame, param_cols: list[str]) -> list[str]:
    """Override keys whose value differs between jobs (the sweep's axes)."""
    return [c for c in param_cols if jobs[c].astype(str).nunique(dropna=False) > 1]


@dataclass
class Report:
    jobs: pd.DataFrame
    groups: pd.DataFrame
    group_keys: list[str]
    metrics: list[str]
    main_metric: str | None
    settings: ReportSettings


def build_report(sweep_dir: str | Path) -> Report:
    """Read every job of ``sweep_dir`` and aggregate it (no files written)."""
    sweep_dir = Path(sweep_dir)
    jobs, config = load_jobs(sweep_dir)
    settings = ReportSettings.from_config(config)
    if jobs.empty:
        return Report(jobs, pd.DataFrame(), [], [], None, settings)
    fixed = {JOB, "_dir", STATUS, ERROR}
    record_keys = set()
    for jd in jobs["_dir"]:
        rec = read_json(Path(jd) / METRICS_FILE) or {}
        record_keys |= set((rec.get("metrics") or {}).keys())
    param_cols = [c for c in jobs.columns if c not in fixed and c not in record_keys]
    swept = swept_keys(jobs, param_cols)
    across = set(settings.repeat_keys) | set(settings.pool_keys)
    group_keys = [k for k in swept if k not in across]
    metrics = _metric_columns(jobs, settings, param_cols)
    main = settings.main_metric or (metrics[0] if metrics else None)
    groups = aggregate(jobs, group_keys, metrics, settings)
    return Report(jobs, groups, group_keys, metrics, main, settings)


def aggregate(
    jobs: pd.DataFrame, group_keys: list[str], metrics: list[str], settings: ReportSettings
) -> pd.DataFrame:
    """Mean, std and count per setting; with ``pool``, pooled per repeat first."""
    ok = jobs[jobs[STATUS] == "ok"]
    rows: list[dict[str, Any]] = []
    grouped = ok.groupby(group_keys, dropna=False, sort=True) if group_keys else [((), ok)]
    all_groups = jobs.groupby(group_keys, dropna=False, sort=True) if group_keys else [((), jobs)]
    totals = {(_as_tuple(k)): len(g) for k, g in all_groups}
    seen: set[tuple] = set()
    for key, group in grouped:
        key = _as_tuple(key)
        seen.add(key)
        samples = _samples(group, metrics, settings)
        row: dict[str, Any] = dict(zip(group_keys, key))
        row["jobs_ok"] = len(group)
        row["jobs"] = totals.get(key, len(group))
        names = _pooled_names(samples, metrics) if settings.pool else metrics
        for m in names:
            values = np.array([s[m] for s in samples if m in s and _finite(s[m])], dtype=float)
            row[f"{m}_mean"] = float(values.mean()) if len(values) else math.nan
            row[f"{m}_std"] = (
                float(values.std(ddof=1)) if len(values) > 1 else 0.0 if len(values) else math.nan
            )
            row[f"{m}_n"] = len(values)
        for m, value in _paper_numbers(row, group_keys, settings).items():
            row[f"{m}_paper"] = value
        rows.append(row)
    for key, total in totals.items():  # settings where every job failed still get a row
        if key not in seen:
            rows.append(dict(zip(group_keys, key)) | {"jobs_ok": 0, "jobs": total})
    return _ordered(pd.DataFrame(rows), group_keys, settings.descending)


def _ordered(groups: pd.DataFrame, group_keys: list[str], descending: list[str]) -> pd.DataFrame:
    """Rows sorted by the swept keys: ascending, or largest first for ``report.descending``."""
    if groups.empty or not group_keys:
        return groups
    try:
        ascending = [k not in descending for k in group_keys]
        return groups.sort_values(group_keys, ascending=ascending, kind="stable").reset_index(
            drop=True
        )
    except TypeError:  # mixed types in one column (numbers and strings): keep the group order
        return groups


def aggregation_note(settings: ReportSettings, group_keys: list[str]) -> str:
    """What a results row aggregates, and how the rows are ordered (the table's subtitle)."""
    repeats = ", ".join(settings.repeat_keys) or "jobs"
    if settings.pool is not None and settings.pool_keys:
        pooled = ", ".join(settings.pool_keys)
        what = (
            f"the jobs of each {repeats} pooled over {pooled} by report.pool, then mean ± std "
            f"over {repeats} (n = number of {repeats} values)"
        )
    else:
        over = ", ".join([*settings.repeat_keys, *settings.pool_keys]) or "jobs"
        what = f"mean ± std over {over} (one value per job)"
    order = ", ".join(
        f"{k} {'descending' if k in settings.descending else 'ascending'}" for k in group_keys
    )
    return f"Each row: {what}." + (f" Rows by {order}." if order else "")


def _pooled_names(samples: list[dict[str, float]], metrics: list[str]) -> list[str]:
    """Pooled metric names in ``report.metrics`` order first (the paper's column order)."""
    found = {m for s in samples for m in s}
    return [m for m in metrics if m in found] + sorted(found - set(metrics))


def _as_tuple(key: Any) -> tuple:
    return key if isinstance(key, tuple) else (key,)


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _samples(
    group: pd.DataFrame, metrics: list[str], settings: ReportSettings
) -> list[dict[str, float]]:
    """One metrics dict per repeat (pooled over pool_keys) or per job."""
    if settings.pool is None:
        return [
            {m: row[m] for m in metrics if m in row and _finite(row[m])}
            for _, row in group.iterrows()
        ]
    repeat = [k for k in settings.repeat_keys if k in group.columns]
    parts = group.groupby(repeat, dropna=False) if repeat else [((), group)]
    samples = []
    for _, part in parts:
        try:
            samples.append(settings.pool([Path(d) for d in part["_dir"]]))
        except Exception as err:
            log.error("report.pool failed for %d jobs: %s", len(part), err)
    return samples


def _paper_numbers(
    row: dict[str, Any], group_keys: list[str], settings: ReportSettings
) -> dict[str, float]:
    """Published numbers whose ``match`` agrees with this row's swept values."""
    for entry in settings.paper:
        match = entry.get("match") or {}
        if all(_same(row.get(k), v) for k, v in match.items()):
            return dict(entry.get("metrics") or {})
    return {}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-15)
    return str(a) == str(b)


def format_cell(mean: float, std: float, n: int) -> str:
    if mean is None or not _finite(mean):
        return "n/a"
    return f"{mean:.4f} ± {std:.4f}" if n and n > 1 else f"{mean:.4f}"


def to_markdown(report: Report, title: str) -> str:
    """The sweep's results table (paper vs ours) followed by the per-job table."""
    lines = [f"# {title}", ""]
    n_ok = int((report.jobs[STATUS] == "ok").sum()) if not report.jobs.empty else 0
    lines.append(f"{len(report.jobs)} jobs, {n_ok} ok, {len(report.jobs) - n_ok} not ok.")
    lines.append("")
    if not report.groups.empty:
        header = list(report.group_keys) + ["jobs ok"]
        metric_names = [c[: -len("_mean")] for c in report.groups.columns if c.endswith("_mean")]
        has_paper = {m for m in metric_names if f"{m}_paper" in report.groups.columns}
        for m in metric_names:
            header.append(f"{m} (ours)" if m in has_paper else m)
            if m in has_paper:
                header.append(f"{m} (paper)")
        lines.append("## Results")
        lines.append("")
        lines.append(aggregation_note(report.settings, report.group_keys))
        lines.append("")
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        for _, row in report.groups.iterrows():
            cells = [str(row.get(k)) for k in report.group_keys]
            cells.append(f"{int(row.get('jobs_ok', 0))}/{int(row.get('jobs', 0))}")
            for m in metric_names:
                cells.append(
                    format_cell(row.get(f"{m}_mean"), row.get(f"{m}_std"), row.get(f"{m}_n"))
                )
                if m in has_paper:
                    paper = row.get(f"{m}_paper")
                    cells.append(f"{paper:.4f}" if _finite(paper) else "")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines.append("## Jobs")
    lines.append("")
    cols = [c for c in report.jobs.columns if c != "_dir"]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "---|" * len(cols))
    for _, row in report.jobs.iterrows():
        cells = []
        for c in cols:
            v = row.get(c)
            cells.append(
                f"{v:.4f}"
                if isinstance(v, float) and math.isfinite(v)
                else ("" if isinstance(v, float) else str(v).replace("|", "/"))
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_main_metric(report: Report, out_dir: Path) -> list[Path]:
    """``plot_<key>.png``: the main metric against each swept numeric key (mean ± std)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths: list[Path] = []
    m = report.main_metric
    if report.groups.empty or not m or f"{m}_mean" not in report.groups.columns:
        return paths
    for key in report.group_keys:
        col = pd.to_numeric(report.groups[key], errors="coerce")
        if col.isna().any():
            continue
        others = [k for k in report.group_keys if k != key]
        fig, ax = plt.subplots(figsize=(6, 4))
        parts = report.groups.groupby(others, dropna=False) if others else [((), report.groups)]
        for label, part in parts:
            part = part.assign(_x=pd.to_numeric(part[key])).sort_values("_x")
            name = ", ".join(f"{k}={v}" for k, v in zip(others, _as_tuple(label))) or "ours"
            ax.errorbar(
                part["_x"],
                part[f"{m}_mean"],
                yerr=part[f"{m}_std"].fillna(0),
                marker="o",
                capsize=3,
                label=name,
            )
            if f"{m}_paper" in part.columns and part[f"{m}_paper"].notna().any():
                ax.plot(
                    part["_x"],
                    part[f"{m}_paper"],
                    "k--x",
                    label=f"paper ({name})" if others else "paper",
                )
        xs = col[col > 0]
        if len(xs) and xs.max() / xs.min() > 100:
            ax.set_xscale("symlog", linthresh=float(xs.min())) if (
                col == 0
            ).any() else ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel(m)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / f"plot_{key.replace('/', '_')}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def write_report(sweep_dir: str | Path) -> Report:
    """Write ``summary.csv`` (jobs), ``summary_groups.csv``, ``summary.md`` and plots."""
    sweep_dir = Path(sweep_dir)
    report = build_report(sweep_dir)
    report.jobs.drop(columns=["_dir"], errors="ignore").to_csv(
        sweep_dir / "summary.csv", index=False
    )
    report.groups.to_csv(sweep_dir / "summary_groups.csv", index=False)
    (sweep_dir / "summary.md").write_text(to_markdown(report, f"Sweep {sweep_dir}"))
    try:
        plot_main_metric(report, sweep_dir)
    except Exception as err:  # a plot must never cost the table
        log.error("plot failed: %s", err)
    return report


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun directory (holds 0/, 1/, ...)")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        raise SystemExit(f"{args.sweep_dir} is not a directory")
    write_report(args.sweep_dir)
    print((args.sweep_dir / "summary.md").read_text())


if __name__ == "__main__":
    main()
