"""Download the Sleep-EDF Expanded Sleep Cassette nights used by the paper (subjects 0-19).

Uses MNE's PhysioNet fetcher, which checks every file's SHA-1 against MNE's published list
and skips files already present. Needs internet access (~40 files, ~2.7 GB for 20 subjects):

    python -m datamodules.sleep_tsr.download --out /data/sleep-edf
    python run.py +experiment=sleep_tsr datamodule.data_dir=/data/sleep-edf ...

The datamodule searches ``data_dir`` recursively, so MNE's ``physionet-sleep-data/`` sub-folder
needs no moving. Subject 13 has one night only (the second was lost), as in the paper.
"""

from __future__ import annotations

import argparse
from pathlib import Path

PAPER_SUBJECTS = list(range(20))


def parse_subjects(text: str) -> list[int]:
    """``"0-19"`` / ``"0,3,5-7"`` -> sorted subject ids."""
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = (int(v) for v in part.split("-", 1))
            out.update(range(lo, hi + 1))
        else:
            out.add(int(part))
    bad = sorted(s for s in out if not 0 <= s <= 82)
    if bad:
        raise ValueError(f"--subjects: {bad} outside the Sleep Cassette range 0-82")
    return sorted(out)


def download(out: str | Path, subjects: list[int] = PAPER_SUBJECTS, fetch=None) -> list[Path]:  # noqa: ANN001
    """Fetch PSG + hypnogram of both nights of ``subjects`` into ``out``; returns the files."""
    if fetch is None:
        from mne.datasets.sleep_physionet.age import fetch_data as fetch
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pairs = fetch(subjects=subjects, recording=[1, 2], path=str(out), on_missing="warn")
    return [Path(p) for pair in pairs for p in pair]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="target folder")
    parser.add_argument("--subjects", default="0-19", help="e.g. 0-19 (the paper) or 0,1,2")
    args = parser.parse_args(argv)
    files = download(args.out, parse_subjects(args.subjects))
    print(f"{len(files)} files under {args.out}; use datamodule.data_dir={args.out}")


if __name__ == "__main__":
    main()
