"""Logistic-regression probe of the encoders a seeds sweep wrote, beside a random-init encoder.

A cheaper stand-in for the chain's SGD linear probe when the machine is too loaded to run it:
frozen encoder, mean-pooled tokens of the un-augmented tiles, StandardScaler + logistic
regression (C 0.1, the development scan's setting) fitted on the train split and scored on the
test split. Also prints the distillation term per epoch from each job's CSV log.

    python benchmarks/sd_mae_feature_probe.py outputs/sd_mae/seeds_cpu
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import torch
import yaml
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.sd_mae_distill_scan import _cpu_model  # noqa: E402
from datamodules.sd_mae.datamodule import SDMAEDataModule  # noqa: E402
from models.sd_mae.encoder import ViTEncoder  # noqa: E402


@torch.no_grad()
def features(enc: ViTEncoder, loader) -> tuple[np.ndarray, np.ndarray]:
    enc.eval()
    xs, ys = [], []
    for x, y in loader:
        xs.append(enc(x).mean(dim=1).numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


def probe(enc: ViTEncoder, dm: SDMAEDataModule) -> float:
    xtr, ytr = features(enc, dm.train_eval_dataloader())
    xte, yte = features(enc, dm.test_dataloader())
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.1))
    return float(clf.fit(xtr, ytr).score(xte, yte))


def distill_curve(job: Path) -> list[float]:
    out = []
    for f in sorted(job.glob("csv/pretrain/**/metrics.csv")):
        with open(f) as fh:
            for row in csv.DictReader(fh):
                v = row.get("train/aux")
                if v:
                    out.append(float(v))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("sweep_dir")
    ap.add_argument("--data-dir", default="data/embedded")
    a = ap.parse_args()
    torch.set_num_threads(1)
    print(f"cpu: {_cpu_model()}")
    rows: dict[str, list[float]] = {}
    dms: dict[int, SDMAEDataModule] = {}
    for job in sorted(p for p in Path(a.sweep_dir).iterdir() if (p / "checkpoints").is_dir()):
        cfg = yaml.safe_load((job / "config_resolved.yaml").read_text())
        seed, method = int(cfg["seed"]), cfg["module"]["method"]
        enc_path = job / "checkpoints" / "encoder.pt"
        if not enc_path.exists():
            print(f"{job.name}: no encoder.pt (pre-training not finished)")
            continue
        if seed not in dms:
            dms[seed] = SDMAEDataModule("embedded", embedded_dir=a.data_dir, img_size=64, seed=seed)
            dms[seed].setup("fit")
            torch.manual_seed(seed)
            rnd = ViTEncoder(**{k: v for k, v in torch.load(enc_path)["arch"].items()})
            rows.setdefault("random-init", []).append(probe(rnd, dms[seed]))
            print(f"seed {seed} random-init: {rows['random-init'][-1]:.3f}", flush=True)
        blob = torch.load(enc_path, weights_only=False)
        enc = ViTEncoder(**blob["arch"])
        enc.load_state_dict(blob["state_dict"])
        acc = probe(enc, dms[seed])
        rows.setdefault(method, []).append(acc)
        curve = distill_curve(job)
        print(
            f"seed {seed} {method}: {acc:.3f}  distill per epoch "
            + (" ".join(f"{v:.3f}" for v in curve) if curve else "-"),
            flush=True,
        )
    print("| encoder | seeds | test acc (mean +- std) |\n|---|---|---|")
    for name, vals in rows.items():
        v = np.array(vals)
        print(f"| {name} | {len(v)} | {v.mean():.3f} +- {v.std(ddof=1) if len(v) > 1 else 0:.3f} |")
    print("chance 0.200 (5 balanced classes)")


if __name__ == "__main__":
    main()
