"""Download the paper's public datasets into the layout the datamodule reads.

    python -m datamodules.sd_mae.download --dataset nct_crc --out /data/nct
    python -m datamodules.sd_mae.download --dataset pcam --out /data/pcam

Every archive is checked against the MD5 the record publishes before it is unpacked; a
mismatch deletes the download and stops (``DataError``). Unpacking goes to a temporary name
that is renamed into place only when complete, and a marker file records a finished
extraction, so an interrupted run leaves nothing that looks finished: the next run removes a
half-extracted folder or file and unpacks again.

ImageNet-100 needs an ImageNet licence: build it yourself (see ``HOW_TO_GET``).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import logging
import shutil
import sys
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

from core.errors import DataError

log = logging.getLogger(__name__)

NCT = "https://zenodo.org/records/1214456/files/{}?download=1"
PCAM = "https://zenodo.org/records/2546921/files/{}?download=1"
# (archive name, url template, md5 published with the record: zenodo 1214456 for NCT-CRC-HE,
# the PCam README / zenodo 2546921 for the gzipped HDF5 files)
FILES: dict[str, list[tuple[str, str, str]]] = {
    "nct_crc": [
        ("NCT-CRC-HE-100K.zip", NCT, "6fd702d11df6292bc054397ae038a464"),
        ("CRC-VAL-HE-7K.zip", NCT, "2fd1651b4f94ebd818ebf90ad2b6ce06"),
    ],
    "pcam": [
        ("camelyonpatch_level_2_split_train_x.h5.gz", PCAM, "1571f514728f59376b705fc836ff4b63"),
        ("camelyonpatch_level_2_split_train_y.h5.gz", PCAM, "35c2d7259d906cfc8143347bb8e05be7"),
        ("camelyonpatch_level_2_split_valid_x.h5.gz", PCAM, "d5b63470df7cfa627aeec8b9dc0c066e"),
        ("camelyonpatch_level_2_split_valid_y.h5.gz", PCAM, "2b85f58b927af9964a4c15b8f7e8f179"),
        ("camelyonpatch_level_2_split_test_x.h5.gz", PCAM, "d8c2d60d490dbd479f8199bdfa0cf6ec"),
        ("camelyonpatch_level_2_split_test_y.h5.gz", PCAM, "60a7035772fbdb7f34eb86d4420cf66a"),
    ],
}


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _fetch(url: str, dest: Path) -> None:
    """Download to ``dest.part``, rename when complete (a killed run leaves only ``.part``)."""
    if dest.exists():
        return
    tmp = dest.with_name(dest.name + ".part")
    with urllib.request.urlopen(url) as r, open(tmp, "wb") as f:
        total = int(r.headers.get("Content-Length", 0) or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name) as bar:
            while chunk := r.read(1 << 20):
                f.write(chunk)
                bar.update(len(chunk))
    tmp.rename(dest)


def verify(path: Path, md5: str) -> None:
    """Delete ``path`` and raise DataError when its MD5 is not the published one."""
    got = md5sum(path)
    if got != md5:
        path.unlink()
        raise DataError(
            f"{str(path)!r}: MD5 {got} != published {md5}; the download is damaged and was "
            "deleted: run the command again"
        )


def _marker(out: Path, name: str) -> Path:
    return out / f".{name}.extracted"


def _remove(p: Path) -> None:
    if p.is_dir():
        shutil.rmtree(p)
    elif p.exists():
        p.unlink()


def _extract_zip(archive: Path, out: Path) -> None:
    """Unpack into ``out/.<name>.tmp``, then rename each top-level entry into ``out``."""
    tmp = out / f".{archive.name}.tmp"
    _remove(tmp)
    with zipfile.ZipFile(archive) as z:
        tops = sorted({Path(n).parts[0] for n in z.namelist() if Path(n).parts})
        for top in tops:  # half-extracted leftovers of an interrupted run
            if (out / top).exists():
                log.warning("%s: removing %s (extraction was not finished)", archive.name, top)
                _remove(out / top)
        z.extractall(tmp)
    for top in tops:
        (tmp / top).rename(out / top)
    tmp.rmdir()


def _extract_gz(archive: Path, target: Path) -> None:
    tmp = target.with_name(target.name + ".tmp")
    with gzip.open(archive, "rb") as src, open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    tmp.replace(target)


def download(dataset: str, out: str | Path) -> Path:
    """Fetch, verify and unpack ``dataset`` into ``out``; finished steps are skipped."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, url, md5 in FILES[dataset]:
        marker = _marker(out, name)
        if marker.exists():
            continue
        dest = out / name
        _fetch(url.format(name), dest)
        verify(dest, md5)
        if name.endswith(".zip"):
            _extract_zip(dest, out)
        elif name.endswith(".gz"):
            target = out / name[:-3]
            if target.exists():
                log.warning("%s: re-extracting %s (no completion marker)", name, target.name)
            _extract_gz(dest, target)
        marker.write_text(md5 + "\n")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", choices=sorted(FILES), required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    try:
        print(f"data ready in {download(a.dataset, a.out)}; pass datamodule.data_dir={a.out}")
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from err


if __name__ == "__main__":
    main()
