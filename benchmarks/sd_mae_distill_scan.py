"""Is the self-distillation term doing anything? A development-set scan of its settings.

For each setting, pre-trains the CPU preset's MAE (``conf/model/sd_mae/vit_cpu.yaml``, heads
256 / 64 / 512) on the embedded tiles' *train* split and prints:

- at initialisation, the norm of the encoder gradient of the weighted distillation term
  ``(1 - alpha) * L_distill`` over that of the weighted MSE ``alpha * L_mse`` (``grad ratio``);
- per epoch, the distillation term, the teacher's entropy and ``ln K`` (the term's value when
  both heads are uniform, i.e. when it does nothing);
- a development probe: 5-fold logistic regression on the frozen, mean-pooled encoder tokens
  of the train split (the test split is never touched here: it is kept to confirm the chosen
  setting with the full chain, ``python run.py +experiment=sd_mae``);
- with ``--collapse``, per epoch on the *validation* split (150 tiles, no centre update): the
  validation term, the teacher's per-image entropy, the entropy of its batch-mean
  distribution (low for both = one prototype for every image), the number of distinct
  teacher / student argmax prototypes over the images, the share of images on the most
  common one, the centre's max, and the mean logit range (max - min) of the teacher.

    python benchmarks/sd_mae_distill_scan.py --epochs 12 --settings plain authors warm
    python benchmarks/sd_mae_distill_scan.py --epochs 30 --collapse --settings authors dino
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datamodules.sd_mae.datamodule import SDMAEDataModule  # noqa: E402
from experiments.sd_mae.objective import PretrainObjective  # noqa: E402
from experiments.sd_mae.optim import build_scheduler, decay_groups, scaled_lr  # noqa: E402
from models.sd_mae.mae import MaskedAutoencoder  # noqa: E402

CPU_MODEL = dict(
    img_size=64, patch_size=8, embed_dim=128, depth=4, num_heads=4, decoder_dim=96,
    decoder_depth=2, decoder_heads=3, mask_ratio=0.75,
)  # fmt: skip
DEVICE = torch.device("cpu")  # --device
HEADS = dict(head_hidden_dim=256, head_bottleneck_dim=64, head_out_dim=512)
# name -> (method, objective overrides)
SETTINGS: dict[str, tuple[str, dict]] = {
    "mae": ("mae", {}),
    "plain": ("sdmae", dict(student_temp=1.0, teacher_temp=1.0, use_centering=False)),
    "authors": (
        "sdmae",
        dict(token_reduce="mean", center_on="probs", alpha=0.8),
    ),
    "authors_a02": ("sdmae", dict(token_reduce="mean", center_on="probs", alpha=0.2)),
    "token_a08": ("sdmae", dict(alpha=0.8)),
    "warm": (
        "sdmae",
        dict(
            alpha=0.8,
            teacher_temp=0.07,
            warmup_teacher_temp=0.04,
            warmup_teacher_temp_epochs=5,
            token_reduce="token",
        ),
    ),
    "warm_sg": (
        "sdmae",
        dict(
            alpha=0.8,
            teacher_temp=0.07,
            warmup_teacher_temp=0.04,
            warmup_teacher_temp_epochs=5,
            stop_grad_teacher=True,
        ),
    ),
    "mild": ("sdmae", dict(alpha=0.8, student_temp=0.2, teacher_temp=0.1)),
    # the authors' setting with ONE change each, then DINO's centring + stop-gradient together
    "authors_sg": (
        "sdmae",
        dict(token_reduce="mean", center_on="probs", alpha=0.8, stop_grad_teacher=True),
    ),
    "authors_logits": ("sdmae", dict(token_reduce="mean", center_on="logits", alpha=0.8)),
    "dino": (
        "sdmae",
        dict(token_reduce="mean", center_on="logits", alpha=0.8, stop_grad_teacher=True),
    ),
    # centring on logits with gradient into the teacher, the centre = this batch's mean logit
    # (momentum 0: no lag for a common component to slip through), token-mean / per token
    "logits_batch": (
        "sdmae",
        dict(token_reduce="mean", center_on="logits", alpha=0.8, center_momentum=0.0),
    ),
    "logits_batch_t07": (
        "sdmae",
        dict(
            token_reduce="mean",
            center_on="logits",
            alpha=0.8,
            center_momentum=0.0,
            teacher_temp=0.07,
        ),
    ),
    "token_logits": ("sdmae", dict(token_reduce="token", center_on="logits", alpha=0.8)),
    "token_logits_batch": (
        "sdmae",
        dict(token_reduce="token", center_on="logits", alpha=0.8, center_momentum=0.0),
    ),
    # Sinkhorn-Knopp balanced teacher (DINOv2 / SwAV), gradient into the teacher or not
    "sinkhorn": ("sdmae", dict(token_reduce="mean", center_on="sinkhorn", alpha=0.8)),
    "sinkhorn_sg": (
        "sdmae",
        dict(token_reduce="mean", center_on="sinkhorn", alpha=0.8, stop_grad_teacher=True),
    ),
    "token_sinkhorn": ("sdmae", dict(token_reduce="token", center_on="sinkhorn", alpha=0.8)),
    "dino_warm": (
        "sdmae",
        dict(
            token_reduce="mean",
            center_on="logits",
            alpha=0.8,
            stop_grad_teacher=True,
            teacher_temp=0.07,
            warmup_teacher_temp=0.04,
            warmup_teacher_temp_epochs=10,
        ),
    ),
}


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        return next(ln.split(":", 1)[1].strip() for ln in out.splitlines() if "Model name" in ln)
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def _enc_grad_norm(net: torch.nn.Module, loss: torch.Tensor) -> float:
    params = [p for p in net.encoder.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return float(torch.sqrt(sum((g**2).sum() for g in grads if g is not None)))


@torch.no_grad()
def _features(net: MaskedAutoencoder, loader) -> tuple[np.ndarray, np.ndarray]:
    net.eval()
    xs, ys = [], []
    for x, y in loader:
        xs.append(net.encoder(x.to(DEVICE)).mean(dim=1).cpu().numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


@torch.no_grad()
def _collapse_stats(net: MaskedAutoencoder, obj: PretrainObjective, loader) -> dict[str, float]:
    """Teacher / student outputs on held-out tiles as the loss sees them (eval: centre frozen)."""
    net.eval()
    obj.eval()
    d = obj.distill
    qs, ps = [], []
    with torch.random.fork_rng():  # masks drawn here must not shift the training stream
        torch.manual_seed(12345)
        for x, _ in loader:
            out = net(x.to(DEVICE))
            qs.append(obj.student_head(out.enc_vis))
            ps.append(obj.teacher_head(out.dec_vis))
    q, p = torch.cat(qs), torch.cat(ps)
    if d.token_reduce == "mean":
        q, p = q.mean(dim=1), p.mean(dim=1)
    else:
        q, p = q.reshape(-1, q.shape[-1]), p.reshape(-1, p.shape[-1])
    val = float(d(q.unsqueeze(1), p.unsqueeze(1)))  # eval mode: no centre update
    t_prob = d.teacher_probs(p)
    ent = -(t_prob * t_prob.clamp_min(1e-12).log()).sum(-1).mean()
    mean_prob = t_prob.mean(0)
    batch_ent = -(mean_prob * mean_prob.clamp_min(1e-12).log()).sum()
    t_arg, s_arg = t_prob.argmax(-1), q.argmax(-1)
    top_share = torch.bincount(t_arg).max() / t_arg.numel()
    return {
        "val": val,
        "ent": float(ent),
        "batch_ent": float(batch_ent),
        "t_protos": int(t_arg.unique().numel()),
        "s_protos": int(s_arg.unique().numel()),
        "top_share": float(top_share),
        "center_max": float(d.center.max()),
        "logit_range": float((p.max(-1).values - p.min(-1).values).mean()),
    }


@torch.no_grad()
def _init_spread(net: MaskedAutoencoder, obj: PretrainObjective, loader) -> str:
    """How much the heads' token-mean outputs differ between images (before any training)."""
    net.eval()
    parts = []
    with torch.random.fork_rng():
        torch.manual_seed(12345)
        outs = [net(x.to(DEVICE)) for x, _ in loader]
    for side, head, attr in (
        ("teacher", obj.teacher_head, "dec_vis"),
        ("student", obj.student_head, "enc_vis"),
    ):
        feats = torch.cat([getattr(o, attr) for o in outs])
        z = torch.nn.functional.normalize(
            torch.nn.functional.normalize(head.mlp(feats), dim=-1).mean(1), dim=-1
        )
        cos = z @ z.T
        off = cos[~torch.eye(len(cos), dtype=torch.bool, device=cos.device)].mean()
        logits = head(feats).mean(1)
        parts.append(
            f"{side}: bottleneck cosine between images {float(off):.3f}, logit std over images "
            f"{float(logits.std(0).mean()):.4f} vs over outputs {float(logits.std(1).mean()):.3f}"
        )
    net.train()
    return "   at init (val): " + "; ".join(parts)


def run(
    name: str,
    epochs: int,
    seed: int,
    base_lr: float,
    dm: SDMAEDataModule,
    collapse: bool = False,
) -> dict:
    method, over = SETTINGS[name]
    torch.manual_seed(seed)
    net = MaskedAutoencoder(**CPU_MODEL).to(DEVICE)
    obj = PretrainObjective(method, net.embed_dim, net.decoder_dim, **{**HEADS, **over})
    obj.to(DEVICE)
    params = list(net.named_parameters()) + [(f"o.{k}", v) for k, v in obj.named_parameters()]
    opt = torch.optim.AdamW(
        decay_groups(params, 0.05), lr=scaled_lr(base_lr, dm.batch_size), betas=(0.9, 0.95)
    )
    dm.set_stage("pretrain")
    loader = dm.train_dataloader()
    sched = build_scheduler(opt, epochs * len(loader), 2 * len(loader))
    ratio = float("nan")
    if collapse and method != "mae":
        print(_init_spread(net, obj, dm.val_dataloader()), flush=True)
    x0 = next(iter(loader))[0].to(DEVICE)
    out = obj(net(x0))
    if "aux" in out:
        a = obj.alpha
        ratio = _enc_grad_norm(net, (1 - a) * out["aux"]) / _enc_grad_norm(net, a * out["mse"])
    hist = []
    for ep in range(epochs):
        net.train()
        obj.train()
        obj.set_epoch(ep)
        sums: dict[str, float] = {}
        for x, _ in loader:
            out = obj(net(x.to(DEVICE)))
            opt.zero_grad()
            out["loss"].backward()
            opt.step()
            sched.step()
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) / len(loader)
        if collapse and method == "sdmae":
            sums.update(_collapse_stats(net, obj, dm.val_dataloader()))
            print(
                f"   {name} ep {ep:2d} train {sums['aux']:.4f} val {sums['val']:.4f} "
                f"t_temp {obj.distill.teacher_temp:.3f} ent {sums['ent']:.3f} "
                f"batch-mean ent {sums['batch_ent']:.3f} protos t/s {sums['t_protos']}/"
                f"{sums['s_protos']} top share {sums['top_share']:.2f} "
                f"train ent/batch-mean/protos {sums['distill_teacher_entropy']:.3f}/"
                f"{sums['distill_teacher_batch_entropy']:.3f}/"
                f"{sums['distill_teacher_prototypes']:.1f} "
                f"centre max {sums['center_max']:.3f} logit range {sums['logit_range']:.3f}",
                flush=True,
            )
        hist.append(sums)
    feats, ys = _features(net, dm.train_eval_dataloader())
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1))
    acc = cross_val_score(clf, feats, ys, cv=5)
    return {"ratio": ratio, "hist": hist, "probe": (acc.mean(), acc.std())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--settings", nargs="+", default=["mae", "plain", "authors", "warm"])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--base-lr", type=float, default=1.5e-3)
    ap.add_argument("--data-dir", default="data/embedded")
    ap.add_argument("--collapse", action="store_true", help="per-epoch collapse read-out (val)")
    ap.add_argument("--device", default="cpu", help="cpu | cuda (figures above: cpu)")
    a = ap.parse_args()
    global DEVICE
    DEVICE = torch.device(a.device)
    torch.set_num_threads(1)
    dev = torch.cuda.get_device_name() if DEVICE.type == "cuda" else "cpu"
    print(
        f"cpu: {_cpu_model()}  device {dev}  torch {torch.__version__}  threads 1  "
        f"epochs {a.epochs}  seed {a.seed}"
    )
    dm = SDMAEDataModule("embedded", embedded_dir=a.data_dir, img_size=64, seed=a.seed)
    dm.setup("fit")
    for name in a.settings:
        t0 = time.time()
        r = run(name, a.epochs, a.seed, a.base_lr, dm, a.collapse)
        h = r["hist"]
        aux = [e.get("aux", float("nan")) for e in h]
        ent = [e.get("distill_teacher_entropy", float("nan")) for e in h]
        print(
            f"{name:12s} grad ratio {r['ratio']:.3f}  distill first/min/last "
            f"{aux[0]:.3f}/{np.nanmin(aux) if h else float('nan'):.3f}/{aux[-1]:.3f}  "
            f"teacher entropy last {ent[-1]:.3f} (ln 512 = {np.log(512):.3f})  "
            f"mse last {h[-1]['mse']:.3f}  dev probe {r['probe'][0]:.3f} +- {r['probe'][1]:.3f}  "
            f"({time.time() - t0:.0f} s)",
            flush=True,
        )
        print("   distill per epoch: " + " ".join(f"{v:.2f}" for v in aux), flush=True)


if __name__ == "__main__":
    main()
