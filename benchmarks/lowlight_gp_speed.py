"""Enhancing one 256x256 RGB image (CM, k = 200) on one CPU core, split per stage.

    python benchmarks/lowlight_gp_speed.py [--k 200] [--repeats 3] [--cnn outputs/.../reference_cnn_cm.pt]

Target (issue): clustering + GP fit + prediction < 0.5 s (CNN excluded); the paper reports
1.74 s with the CNN on a 3.6 GHz i7. Prints wall and CPU seconds per stage (median over images
x repeats) for the default enhancer (torch k-means back-end, query de-duplication), the
scikit-learn back-end, and without de-duplication; then the reference CNN on its own, and
gpytorch's own predictive path on a subset of the queries for comparison.

``--device cuda`` runs the reference CNN there (bf16 autocast by default); clustering, the GP fit
and prediction are CPU stages (small k x k systems in float64, where a GPU does not help). It
ends with the projected time of the k study (14 jobs x 300 images x 5 levels); ``--json F``
also writes the figures to F.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gpytorch  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import (  # noqa: E402
    add_common_args,
    autocast,
    describe,
    machine,
    resolve_device,
    sync,
    write_record,
)
from benchmarks.lowlight_gp_common import Clock, load_cnn, photos, reference  # noqa: E402
from benchmarks.studies import STUDIES  # noqa: E402
from datamodules.lowlight_gp.darken import darken  # noqa: E402
from models.lowlight_gp.enhancer import GPEnhancer, to_planes  # noqa: E402
from models.lowlight_gp.gp import ExactSEGP  # noqa: E402
from models.lowlight_gp.patches import neighbourhoods  # noqa: E402
from models.lowlight_gp.reference_cnn import ReferenceCNN  # noqa: E402

warnings.filterwarnings("ignore")
torch.set_num_threads(1)


def stage_times(enhancer: GPEnhancer, cases, repeats: int) -> dict[str, list[float]]:
    """Wall seconds per stage (the enhancer's own clocks) and CPU seconds of the whole call."""
    out: dict[str, list[float]] = {
        "cluster": [],
        "gp_fit": [],
        "predict": [],
        "total": [],
        "cpu": [],
    }
    for _ in range(repeats):
        for dark, ref in cases:
            with Clock() as c:
                res = enhancer.enhance(dark, ref)
            for k, v in res.timings.items():
                out[k].append(v)
            out["total"].append(sum(res.timings.values()))
            out["cpu"].append(c.cpu)
    return out


def gpytorch_predict_seconds(x: torch.Tensor, y: torch.Tensor, queries: torch.Tensor) -> float:
    """gpytorch's ExactGP posterior mean (eval mode) on ``queries``, seconds."""

    class Model(gpytorch.models.ExactGP):
        def __init__(self):
            super().__init__(x, y, gpytorch.likelihoods.GaussianLikelihood())
            self.mean = gpytorch.means.ZeroMean()
            self.cov = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel())

        def forward(self, z):
            return gpytorch.distributions.MultivariateNormal(self.mean(z), self.cov(z))

    model = Model().double().eval()
    t = time.perf_counter()
    with torch.no_grad():
        model(queries.double()).mean  # noqa: B018
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--k", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--gamma", type=float, default=4.29)
    ap.add_argument("--images", default="astronaut,coffee,rocket")
    ap.add_argument("--cnn", default=None, help="reference_cnn_cm.pt of a run (default: oracle)")
    ap.add_argument("--skip-gpytorch", action="store_true", help="skip gpytorch's comparison")
    add_common_args(ap)
    args = ap.parse_args()
    device = resolve_device(ap, args)
    info = machine(device)
    print(describe(info))
    names = args.images.split(",")
    net = load_cnn(args.cnn, 3)
    cases = []
    for _, img in photos(256, names):
        dark = darken(img, args.gamma)
        cases.append((dark, reference(net, dark, img, "cm")))
    print(
        f"256x256 RGB, CM, k={args.k}, gamma={args.gamma}, {len(cases)} images x {args.repeats} "
        f"repeats, torch threads={torch.get_num_threads()}, reference={'CNN' if net else 'oracle'}"
    )
    # Warm-up (lazy imports, first L-BFGS call).
    GPEnhancer("cm", k=20).enhance(*cases[0])
    print(
        f"{'backend':8s} {'cluster':>8s} {'gp_fit':>8s} {'predict':>8s} {'total':>8s} {'cpu':>8s}  (median seconds)"
    )
    rows = {
        "torch": {},  # the default enhancer
        "sklearn": {"kmeans_backend": "sklearn"},
        "no-dedup": {"dedupe_queries": False},
    }
    figures: dict = {"k": args.k}
    for name, over in rows.items():
        t = stage_times(GPEnhancer("cm", k=args.k, **over), cases, args.repeats)
        med = {k: float(np.median(v)) for k, v in t.items()}
        figures[name] = {k: round(v, 4) for k, v in med.items()}
        print(
            f"{name:8s} {med['cluster']:8.3f} {med['gp_fit']:8.3f} {med['predict']:8.3f} "
            f"{med['total']:8.3f} {med['cpu']:8.3f}"
        )
    cnn = (net or ReferenceCNN(3)).to(device)
    x = torch.from_numpy(to_planes(cases[0][0], "cm")).float()[None].to(device)
    with torch.no_grad(), autocast(device, args.amp):
        cnn(x)
        sync(device)
        with Clock() as c:
            for _ in range(args.repeats):
                cnn(x)
            sync(device)
    cnn_s = c.wall / args.repeats
    figures["reference_cnn_s"] = round(cnn_s, 4)
    print(
        f"reference CNN (CM, 256x256, {device}, amp {args.amp}): {cnn_s:.3f} s wall, "
        f"{c.cpu / args.repeats:.3f} s CPU"
    )
    # gpytorch's predictive path on the same GP size, on 1/16 of the 196,608 queries.
    study = STUDIES["lowlight_gp"]
    per_image = figures["torch"]["total"] + cnn_s
    print(study.line(per_image, f"{info['cpu']} (GP stages) + {info['device']} (CNN)"))
    figures["projected_study_hours"] = round(study.projected_hours(per_image), 2)
    write_record(args.json, "lowlight_gp_speed", info, figures)
    if args.skip_gpytorch:
        return
    q = neighbourhoods(torch.from_numpy(to_planes(cases[0][0], "cm")).float(), 3, 3)
    gp_x = torch.rand(args.k, 9, dtype=torch.float64)
    gp_y = torch.rand(args.k, dtype=torch.float64)
    sub = q[: len(q) // 16]
    s_gpy = gpytorch_predict_seconds(gp_x, gp_y, sub)
    ours = ExactSEGP(iterations=0).fit(gp_x, gp_y)
    with Clock() as c:
        ours.predict(sub)
    print(
        f"posterior mean on {len(sub)} queries (1/16 of the image): gpytorch {s_gpy:.3f} s, "
        f"batched kernel products {c.wall:.3f} s  (x{s_gpy / max(c.wall, 1e-9):.0f})"
    )


if __name__ == "__main__":
    main()
