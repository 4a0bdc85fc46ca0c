"""Benchmark records (the JSON ``--json`` writes) -> the markdown rows of docs/results.md.

One function per benchmark says which of its figures is the headline, so a table is built from
what was measured, never typed. ``replace_section`` swaps one marked block of a markdown file,
which is how the report and the GPU check update docs/results.md and the README in place.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

Record = dict[str, Any]


def _sleep_step(f: dict) -> str:
    bn, plain = f["recurrent-BN x2 (fused)"], f["plain nn.LSTM x2"]
    return (
        f"recurrent-BN {bn['ms_per_step']:.1f} ms vs plain LSTM {plain['ms_per_step']:.1f} ms "
        f"= **{bn['ratio_vs_plain']:.2f}x** (target <= 1.5x; amp {f.get('amp', 'off')})"
    )


def _gmm(f: dict) -> str:
    g, s = f["gmm"], f["softmax"]
    mem = f" ; memory {g['x_mem']:.2f}x (target <= 2x)" if "x_mem" in g else ""
    step = f"training step ({f['optimizer']})" if "optimizer" in f else "forward + backward"
    fwd_bwd = f", forward + backward {g['fwd_bwd_x']:.2f}x" if "fwd_bwd_x" in g else ""
    return (
        f"GMM layer {step} {g['ms_per_step']:.1f} ms vs Linear + softmax {s['ms_per_step']:.1f} "
        f"ms = **{g['x_time']:.2f}x** (target <= 1.3x){fwd_bwd}{mem}; subnormal "
        f"responsibilities before the flush {100 * f['subnormal_before_flush']:.2f} %"
        + (f"; GMM stages {f['kernels']}" if "kernels" in f else "")
    )


def _sd_mae(f: dict) -> str:
    parts = []
    for method in ("mae", "sdmae"):
        if f"{method}@0.75" in f and f"{method}@0.0" in f:
            r = f[f"{method}@0.75"]
            parts.append(
                f"{method} {r['images_per_s']:.1f} img/s at mask 0.75, step(0.75)/step(0) = "
                f"**{r['vs_ratio0']:.2f}**"
            )
    return "; ".join(parts) + f" (target <= 0.5; batch {f['batch']}, amp {f['amp']})"


def _frailty_step(f: dict) -> str:
    return (
        f"DeepConvLSTM ({f['parameters']:,} params) {f['ms_per_step']:.1f} ms/step at batch "
        f"{f['batch']} (amp {f['amp']})"
    )


def _lowlight(f: dict) -> str:
    t = f["torch"]
    return (
        f"k = {f['k']}: cluster {t['cluster']:.3f} + GP fit {t['gp_fit']:.3f} + predict "
        f"{t['predict']:.3f} = **{t['total']:.3f} s** per 256x256 image (target < 0.5 s; CPU "
        f"stages); reference CNN {f['reference_cnn_s']:.3f} s"
    )


def _frailty_pre(f: dict) -> str:
    return (
        f"{f['participants']} participants, {f['windows']:,} windows: vectorised "
        f"**{f['vectorised_s']:.1f} s**, per-window loop {f['loop_s']:.1f} s = {f['speedup']:.1f}x "
        f"(target < 60 s and >= 20x)"
    )


def _sleep_pre(f: dict) -> str:
    crop = f.get("crop=sleep_30min", {}).get("s_per_night")
    full = f.get("crop=none", {}).get("s_per_night")
    return (
        f"{f['hours']:g} h night ({f['psg_mb']:.0f} MB): **{crop:.2f} s** cropped, {full:.2f} s "
        f"uncropped (target < 5 s)"
    )


HEADLINES: dict[str, tuple[str, Callable[[dict], str]]] = {
    "sleep_tsr_preprocessing": ("sleep_tsr", _sleep_pre),
    "sleep_tsr_train_step": ("sleep_tsr", _sleep_step),
    "deep_gmm_speed": ("deep_gmm", _gmm),
    "sd_mae_speed": ("sd_mae", _sd_mae),
    "frailty_preprocessing": ("frailty", _frailty_pre),
    "frailty_train_step": ("frailty", _frailty_step),
    "lowlight_gp_speed": ("lowlight_gp", _lowlight),
}


def load_records(folder: Path) -> list[Record]:
    """Every ``*.json`` record in ``folder``, in name order."""
    return [json.loads(p.read_text()) for p in sorted(Path(folder).glob("*.json"))]


def device_label(machine: dict) -> str:
    if machine["device"] != "cpu":
        return machine["device"]
    threads = f"{machine['threads']} thread{'s' if machine['threads'] > 1 else ''}"
    return f"{machine['cpu']} ({machine['isa']}, {machine['blas']}, {threads})"


def render_records(records: list[Record]) -> str:
    """A markdown table: paper, benchmark, device, headline, projected full study."""
    rows = [
        "| paper | benchmark | measured on | figure | projected full study |",
        "|---|---|---|---|---|",
    ]
    for rec in records:
        paper, headline = HEADLINES[rec["benchmark"]]
        f = rec["figures"]
        hours = f.get("projected_study_hours")
        rows.append(
            f"| {paper} | `{rec['benchmark']}` | {device_label(rec['machine'])}, load "
            f"{rec['machine']['load']} | {headline(f)} | "
            f"{f'{hours:,.1f} h' if hours is not None else '-'} |"
        )
    return "\n".join(rows)


def replace_section(text: str, name: str, body: str) -> str:
    """Replace (or append) the block between ``<!-- name:start -->`` and ``<!-- name:end -->``."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text)
    return text.rstrip() + "\n\n" + block + "\n"


def read_section(text: str, name: str) -> str | None:
    """The body of a marked block, or None."""
    found = re.search(  # an empty block (start and end on consecutive lines) reads as ""
        re.escape(f"<!-- {name}:start -->") + r"\n?(.*?)\n?" + re.escape(f"<!-- {name}:end -->"),
        text,
        re.S,
    )
    return found.group(1) if found else None
