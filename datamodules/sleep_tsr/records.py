"""Sleep-EDF file naming: pair ``*-PSG.edf`` with ``*-Hypnogram.edf`` and parse subject/night.

Sleep Cassette names look like ``SC4001E0-PSG.edf`` / ``SC4001EC-Hypnogram.edf``: ``SC4`` +
subject (2 digits) + night (1 digit) + a letter shared by both files, then one character that
differs (PSG: ``0``; hypnogram: the scorer's letter). Files are matched on the first 7 characters.
Sleep Telemetry files (``ST7ssN?0-PSG.edf``) follow the same pattern; ``study`` tells them apart,
because their subject numbers overlap the SC ones but are other people.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

PSG_RE = re.compile(
    r"^(?P<code>(?P<study>SC|ST)\d(?P<subject>\d\d)(?P<night>\d)[A-Z])\w-PSG\.edf$", re.I
)
HYP_RE = re.compile(r"^(?P<code>(?:SC|ST)\d\d\d\d[A-Z])\w-Hypnogram\.edf$", re.I)


@dataclass(frozen=True)
class RecordingFiles:
    """One night: the PSG, its hypnogram (None when missing), subject id, night, study (SC/ST)."""

    name: str
    psg: Path
    hypnogram: Path | None
    subject: int
    night: int
    study: str = "SC"


def find_recordings(data_dir: str | Path) -> tuple[list[RecordingFiles], list[str]]:
    """All PSG files under ``data_dir`` (recursively) with their hypnograms.

    Returns ``(recordings, problems)``; ``problems`` are human-readable lines naming files that
    cannot be paired (a hypnogram without PSG, two hypnograms for one PSG).
    """
    root = Path(data_dir)
    psgs: dict[str, Path] = {}
    hyps: dict[str, list[Path]] = {}
    problems: list[str] = []
    for path in sorted(root.rglob("*.edf")):
        if m := PSG_RE.match(path.name):
            code = m["code"].upper()
            if code in psgs:
                problems.append(f"{path}: a second PSG for {code} (first: {psgs[code]}); ignored")
                continue
            psgs[code] = path
        elif m := HYP_RE.match(path.name):
            hyps.setdefault(m["code"].upper(), []).append(path)
    recordings = []
    for code, psg in sorted(psgs.items()):
        m = PSG_RE.match(psg.name)
        found = hyps.get(code, [])
        if len(found) > 1:
            problems.append(f"{psg}: several hypnograms match ({', '.join(map(str, found))})")
        recordings.append(
            RecordingFiles(
                name=psg.name[: -len("-PSG.edf")],
                psg=psg,
                hypnogram=found[0] if len(found) == 1 else None,
                subject=int(m["subject"]),
                night=int(m["night"]),
                study=m["study"].upper(),
            )
        )
    for code, files in sorted(hyps.items()):
        if code not in psgs:
            problems.append(f"{files[0]}: hypnogram without a matching {code}?-PSG.edf; ignored")
    return recordings, problems


def psg_name(subject: int, night: int, letter: str = "E") -> str:
    """``SC4ssN<letter>0-PSG.edf`` for a Sleep Cassette subject/night."""
    return f"SC4{subject:02d}{night}{letter}0-PSG.edf"


def hypnogram_name(subject: int, night: int, letter: str = "E", scorer: str = "C") -> str:
    """``SC4ssN<letter><scorer>-Hypnogram.edf``."""
    return f"SC4{subject:02d}{night}{letter}{scorer}-Hypnogram.edf"
