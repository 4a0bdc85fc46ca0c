"""Download the paper's public datasets into the layout the datamodule reads.

    python -m datamodules.sd_mae.download --dataset nct_crc --out /data/nct
    python -m datamodules.sd_mae.download --dataset pcam --out /data/pcam

ImageNet-100 needs an ImageNet licence: build it yourself (see ``HOW_TO_GET``).
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

NCT = "https://zenodo.org/records/1214456/files/{}?download=1"
PCAM = "https://zenodo.org/records/2546921/files/{}?download=1"
FILES = {
    "nct_crc": [("NCT-CRC-HE-100K.zip", NCT), ("CRC-VAL-HE-7K.zip", NCT)],
    "pcam": [
        (f"camelyonpatch_level_2_split_{s}_{k}.h5.gz", PCAM)
        for s in ("train", "valid", "test")
        for k in ("x", "y")
    ],
}


def _fetch(url: str, dest: Path) -> None:
    if dest.exists():
        return
    tmp = dest.with_suffix(dest.suffix + ".part")
    with urllib.request.urlopen(url) as r, open(tmp, "wb") as f:
        total = int(r.headers.get("Content-Length", 0)) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name) as bar:
            while chunk := r.read(1 << 20):
                f.write(chunk)
                bar.update(len(chunk))
    tmp.rename(dest)


def download(dataset: str, out: str | Path) -> Path:
    """Fetch and unpack ``dataset`` into ``out``; already present files are skipped."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, url in FILES[dataset]:
        dest = out / name
        _fetch(url.format(name), dest)
        if name.endswith(".zip"):
            with zipfile.ZipFile(dest) as z:
                z.extractall(out)
        elif name.endswith(".gz"):
            target = out / name[:-3]
            if not target.exists():
                with gzip.open(dest, "rb") as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", choices=sorted(FILES), required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    print(f"data ready in {download(a.dataset, a.out)}; pass datamodule.data_dir={a.out}")


if __name__ == "__main__":
    main()
