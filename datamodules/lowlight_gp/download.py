"""Download GPE's published reference CNN (``SPIC/cnnmodel.mat``) for ``lowlight.reference_cnn=gpe``.

    python -m datamodules.lowlight_gp.download --out data/lowlight_gp

The file is fetched from the authors' repository (cs-chan/Exclusively-Dark-Image-Dataset,
pinned to the commit that added it) and checked against its SHA-256 before it is kept.
ExDark itself is a manual download (see ``HOW_TO_GET_LOWLIGHT`` in the datamodule).
"""

from __future__ import annotations

import argparse
import hashlib
import urllib.request
from pathlib import Path

from core.errors import DataError

COMMIT = "be6c16172bef3e05d54d35ae4ad57ba56c94741f"
GPE_CNN_URL = (
    "https://raw.githubusercontent.com/cs-chan/Exclusively-Dark-Image-Dataset/"
    f"{COMMIT}/SPIC/cnnmodel.mat"
)
GPE_CNN_SHA256 = "5e6adf9dd56297c8fcedd0a4b2dbdd5c9a45209e95a4e7fe78613e76ed07a998"
GPE_CNN_NAME = "cnnmodel.mat"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def download_gpe_cnn(out: str | Path, url: str = GPE_CNN_URL) -> Path:
    """``<out>/cnnmodel.mat`` (downloaded once, SHA-256 checked); returns its path."""
    out = Path(out)
    dest = out / GPE_CNN_NAME
    if dest.exists() and sha256(dest) == GPE_CNN_SHA256:
        return dest
    out.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".part")
    with urllib.request.urlopen(url) as r, tmp.open("wb") as f:
        while chunk := r.read(1 << 20):
            f.write(chunk)
    got = sha256(tmp)
    if got != GPE_CNN_SHA256:
        tmp.unlink()
        raise DataError(f"{url}: SHA-256 {got}, expected {GPE_CNN_SHA256}; not kept")
    tmp.replace(dest)
    return dest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default="data/lowlight_gp")
    a = p.parse_args()
    path = download_gpe_cnn(a.out)
    print(
        f"GPE reference CNN ready: {path}; pass lowlight.reference_cnn=gpe lowlight.gpe_cnn={path}"
    )


if __name__ == "__main__":
    main()
