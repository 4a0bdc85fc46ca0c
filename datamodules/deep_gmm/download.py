"""Fetch LibriSpeech train-clean-100 for the Deep GMM frame-classification study.

    python -m datamodules.deep_gmm.download --out DIR

Downloads and unpacks ``train-clean-100.tar.gz`` (6.3 GB) from OpenSLR into ``DIR`` and checks
for the frame alignment file. The published 41-class phone alignments of LibriSpeech-100h
(``converted_aligned_phones.txt``, one label per 10 ms frame, from the CPC paper's release:
https://drive.google.com/drive/folders/1BhJ2umKH3whguxMwifaKtSra0TgAbtfb) sit behind Google
Drive, which cannot be fetched reliably by script: download it by hand into ``DIR``. Any other
corpus works the same way: audio files named ``<utt_id>.flac/.wav`` anywhere under ``DIR`` and
a text file ``utt_id label label ...``.
"""

from __future__ import annotations

import argparse
import tarfile
import urllib.request
from pathlib import Path

from tqdm import tqdm

URL = "https://www.openslr.org/resources/12/train-clean-100.tar.gz"
ALIGNMENTS = "converted_aligned_phones.txt"


def download(url: str, dest: Path) -> Path:
    if dest.exists():
        return dest
    tmp = dest.with_suffix(dest.suffix + ".part")
    with urllib.request.urlopen(url) as resp, tmp.open("wb") as fh:
        total = int(resp.headers.get("Content-Length", 0)) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name) as bar:
            while chunk := resp.read(1 << 20):
                fh.write(chunk)
                bar.update(len(chunk))
    tmp.replace(dest)
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--url", default=URL)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not (args.out / "LibriSpeech" / "train-clean-100").is_dir():
        archive = download(args.url, args.out / Path(args.url).name)
        with tarfile.open(archive) as tar:
            tar.extractall(args.out, filter="data")
    if (args.out / ALIGNMENTS).is_file():
        print(f"ready: python run.py +experiment=deep_gmm_paper datamodule.data_dir={args.out}")
    else:
        print(
            f"audio ready under {args.out}/LibriSpeech. Now put {ALIGNMENTS} (41 phone classes, "
            "10 ms frames) from https://drive.google.com/drive/folders/1BhJ2umKH3whguxMwifaKtSra0TgAbtfb "
            f"into {args.out}, then: python run.py +experiment=deep_gmm_paper datamodule.data_dir={args.out}"
        )


if __name__ == "__main__":
    main()
