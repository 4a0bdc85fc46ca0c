"""The lowlight_gp study as a runner pipeline: train the reference CNN, then enhance and score.

1. Reference CNN (LM: Y channel, CM: RGB) trained with Lightning on (darkened, original) crops,
   or loaded from ``<paths.data_dir>/cache/lowlight_gp/`` when a run with the same settings
   trained it before (the k sweep reuses one CNN per mode instead of retraining 7 times).
2. Every test image at its 26 levels (25 gammas + the original) is enhanced by the chosen method
   (``ours`` = k-means GP, ``gpe`` = unique-pair GP, ``full`` = GP on all pairs, ``lime``,
   ``dark`` = no enhancement), single-threaded, and scored: PSNR and SIFT retrieval against the
   original, seconds per stage. ``test/*`` metrics average the 25 darkened levels;
   ``test/orig_psnr`` is the PSNR of the enhanced original (how much a bright image is hurt).
3. Figures (grid, PSNR and time vs k), enhanced PNGs, the real low-light folder's output and
   ``per_image.csv`` go into the job directory.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from core.checks import ConfigError, check_choice, check_file
from datamodules.lowlight_gp.darken import LEVELS, darken
from experiments.lowlight_gp.evaluate import checkpoint_cnn, require_reference_cnn
from experiments.lowlight_gp.figures import save_grid, save_k_curve, save_png
from experiments.lowlight_gp.metrics import SiftRetrieval, psnr
from experiments.runner.builders import build_callbacks, plain_config
from experiments.runner.callbacks import EmbedRunConfig
from experiments.runner.context import RunContext
from experiments.runner.pipeline import scalar_metrics
from models.lowlight_gp.enhancer import GPEnhancer, to_planes
from models.lowlight_gp.gpe_cnn import GPEReferenceCNN
from models.lowlight_gp.lime import lime_enhance

log = logging.getLogger(__name__)
METHODS = ("ours", "gpe", "full", "lime", "dark")
# trained: our SRCNN-style net trained on the bright folder; gpe: GPE's published weights
REFERENCE_CNNS = ("trained", "gpe")
GP_METHODS = {"ours": "kmeans", "gpe": "gpe", "full": "full"}
STAGES = ("cnn", "cluster", "gp_fit", "predict")


# ---- settings -----------------------------------------------------------------------------
def resolve_settings(cfg: DictConfig) -> DictConfig:
    """``cfg.lowlight`` with a Table-III ``row`` (if any) applied and every value checked."""
    ll = OmegaConf.create(OmegaConf.to_container(cfg.lowlight, resolve=True))
    with open_dict(ll):
        if ll.get("row"):
            rows = ll.get("rows") or {}
            check_choice("lowlight.row", ll.row, list(rows))
            for key, value in rows[ll.row].items():
                if key == "k":
                    ll.enhancer.k = value
                else:
                    ll[key] = value
        ll.enhancer.mode = ll.mode
    check_choice("lowlight.mode", ll.mode, ["lm", "cm"])
    check_choice("lowlight.method", ll.method, METHODS)
    check_choice("lowlight.reference_cnn", ll.get("reference_cnn", "trained"), REFERENCE_CNNS)
    if ll.get("reference_cnn") == "gpe":
        check_file(
            "lowlight.gpe_cnn",
            ll.gpe_cnn,
            "GPE's cnnmodel.mat (python -m datamodules.lowlight_gp.download --out DIR)",
        )
    return ll


def _enhancer(ll: DictConfig, method: str, **over: Any) -> GPEnhancer:
    kwargs = OmegaConf.to_container(ll.enhancer, resolve=True)
    kwargs.pop("_target_", None)
    kwargs.update(selection=GP_METHODS[method], **over)
    try:
        return GPEnhancer(**kwargs)
    except ValueError as err:
        raise ConfigError("lowlight.enhancer", str(err)) from err


def _check_sizes(ll: DictConfig, eval_size: int) -> None:
    """k must not exceed the patch pairs of one image; the full GP only on small images."""
    p, q = ll.enhancer.patch_size
    channels = 1 if ll.mode == "lm" else 3
    n_pairs = channels * (eval_size // p) * (eval_size // q)
    if ll.method == "ours" and ll.enhancer.k > n_pairs:
        raise ConfigError(
            "lowlight.enhancer.k",
            f"got {ll.enhancer.k}; a {eval_size}x{eval_size} image gives only {n_pairs} "
            f"{p}x{q} patch pairs in mode {ll.mode}",
        )
    if ll.method == "full" and n_pairs > ll.full_max_pairs:
        raise ConfigError(
            "lowlight.method",
            f"the full GP on {n_pairs} pairs is too slow (limit lowlight.full_max_pairs="
            f"{ll.full_max_pairs}); use datamodule.eval_size<=128 or method=ours",
        )


# ---- reference CNN ------------------------------------------------------------------------
def _cnn_key(cfg: DictConfig, channels: int) -> str:
    dm = OmegaConf.to_container(cfg.datamodule, resolve=True)
    dm.pop("num_workers", None)
    blob = {
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "optimizer": OmegaConf.to_container(cfg.module.get("optimizer"), resolve=True),
        "max_epochs": cfg.trainer.get("max_epochs"),
        "max_steps": cfg.trainer.get("max_steps"),
        "limits": [cfg.trainer.get(k) for k in ("limit_train_batches", "fast_dev_run")],
        "datamodule": dm,
        "seed": cfg.seed,
        "channels": channels,
    }
    return hashlib.sha1(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


def reference_cnn(
    ctx: RunContext, mode: str, metrics: dict[str, float], extra: bool = False
) -> torch.nn.Module:
    """The trained reference CNN for ``mode`` (from the cache, or trained now and cached).

    ``extra``: a second CNN of the run (the LM net behind the grid's GPE column in a CM run);
    its checkpoints go to ``checkpoints/reference_cnn_<mode>/`` so they do not replace the main
    net's.
    """
    cfg = ctx.cfg
    channels = 1 if mode == "lm" else 3
    if cfg.lowlight.get("reference_cnn", "trained") == "gpe":
        log.info(
            "reference CNN (%s): GPE's published net from %s", mode.upper(), cfg.lowlight.gpe_cnn
        )
        gpe = GPEReferenceCNN(channels, weights=cfg.lowlight.gpe_cnn).eval()
        if not extra:  # pipeline=predict then needs no .mat file
            save_reference_checkpoint(cfg, gpe, ctx.output_dir / "checkpoints", mode)
        return gpe
    net = None if extra else checkpoint_cnn(ctx, mode)  # train=false ckpt_path=...: that CNN
    if net is not None:
        torch.save(net.state_dict(), ctx.output_dir / f"reference_cnn_{mode}.pt")
        return net
    net = instantiate(cfg.model, in_channels=channels)
    cache = Path(cfg.paths.data_dir) / "cache" / "lowlight_gp" / f"cnn_{_cnn_key(cfg, channels)}.pt"
    if cfg.lowlight.reference_cache and cache.exists():
        log.info("reference CNN (%s) loaded from %s", mode.upper(), cache)
        net.load_state_dict(torch.load(cache, weights_only=True))
    elif cfg.get("train", True):
        module = ctx.module
        if module is None or getattr(module.net, "in_channels", None) != channels:
            module = instantiate(cfg.module, net=net)
        module.net = net
        over = {"callbacks": build_callbacks(cfg, stage=f"reference_cnn_{mode}")} if extra else {}
        trainer = ctx.make_trainer(**over)
        trainer.fit(module, datamodule=ctx.datamodule)
        metrics.update({k: v for k, v in scalar_metrics(trainer.callback_metrics).items()})
        best = next(
            (cb.best_model_path for cb in trainer.checkpoint_callbacks if cb.best_model_path), ""
        )
        if best:
            state = torch.load(best, map_location="cpu", weights_only=False)["state_dict"]
            net.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("net.")})
            metrics["val/psnr_best"] = float(trainer.checkpoint_callbacks[0].best_model_score or 0)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{time.time_ns()}.tmp")
        torch.save(net.state_dict(), tmp)
        tmp.replace(cache)
    else:
        log.warning("train=false and no cached reference CNN: using the untrained (identity) net")
    torch.save(net.state_dict(), ctx.output_dir / f"reference_cnn_{mode}.pt")
    if not extra:  # what pipeline=predict loads from this run directory
        save_reference_checkpoint(cfg, net, ctx.output_dir / "checkpoints", mode)
    return net.eval()


def save_reference_checkpoint(cfg: DictConfig, net: torch.nn.Module, ckpt_dir: Path, mode: str):
    """``reference_cnn_<mode>.ckpt``: the CNN the run used (trained or cached) and the run config,
    in the layout of a Lightning checkpoint of ``ReferenceCNNModule`` (weights under ``net.``)."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    torch.save(
        {"state_dict": state, EmbedRunConfig.KEY: plain_config(cfg), "lowlight_mode": mode},
        ckpt_dir / f"reference_cnn_{mode}.ckpt",
    )


@torch.no_grad()
def reference_planes(net: torch.nn.Module, rgb: np.ndarray, mode: str) -> np.ndarray:
    """I_R = CNN(I_L) on the planes of ``mode``: (C, H, W) float64."""
    planes = torch.from_numpy(to_planes(rgb, mode)).float()[None]
    return net(planes)[0].double().numpy()


# ---- one enhancement ----------------------------------------------------------------------
def enhance(
    method: str,
    dark: np.ndarray,
    mode: str,
    net: torch.nn.Module | None,
    enhancer: GPEnhancer | None,
) -> tuple[np.ndarray, dict[str, float], np.ndarray | None]:
    """(enhanced RGB, seconds per stage, reference planes or None) for one method."""
    if method == "dark":
        return dark, {}, None
    if method == "lime":
        t0 = time.perf_counter()
        out = lime_enhance(dark)
        return out, {"enhance": time.perf_counter() - t0}, None
    t0 = time.perf_counter()
    ref = reference_planes(net, dark, enhancer.mode)
    cnn_s = time.perf_counter() - t0
    res = enhancer.enhance(dark, ref)
    return res.image, {"cnn": cnn_s, **res.timings}, ref


def _score(out: np.ndarray, img: np.ndarray, sift: SiftRetrieval) -> dict[str, float]:
    s = sift.score(out, img)
    return {"psnr": psnr(out, img), "precision": s.precision, "recall": s.recall, "f1": s.f1}


# ---- the pipeline -------------------------------------------------------------------------
def run(ctx: RunContext) -> dict[str, Any]:
    """Train (or load) the reference CNN, enhance every test image at 26 levels, score, plot."""
    cfg = ctx.cfg
    ll = resolve_settings(cfg)
    dm = ctx.datamodule
    if dm is None:
        raise ConfigError(
            "datamodule", "the lowlight_gp pipeline needs datamodule=lowlight_gp/photos"
        )
    _check_sizes(ll, dm.hparams.eval_size)
    levels = list(range(len(LEVELS))) if ll.levels == "all" else list(ll.levels)
    for i in levels:
        if not 0 <= int(i) < len(LEVELS):
            raise ConfigError("lowlight.levels", f"index {i} outside 0..{len(LEVELS) - 1}")
    if not cfg.get("train", True) and ll.method in GP_METHODS:
        channels = 1 if ll.mode == "lm" else 3
        cache = (
            Path(cfg.paths.data_dir) / "cache" / "lowlight_gp" / f"cnn_{_cnn_key(cfg, channels)}.pt"
        )
        require_reference_cnn(ctx, ll.mode, cache)
    torch.set_num_threads(int(ll.num_threads))
    # built (and its options checked) before any data is read
    enhancer = _enhancer(ll, ll.method) if ll.method in GP_METHODS else None
    dm.prepare_data()
    dm.setup("fit")
    metrics: dict[str, Any] = {"data/skipped_images": float(len(dm.skipped))}
    net = reference_cnn(ctx, ll.mode, metrics) if ll.method in GP_METHODS else None

    sift = SiftRetrieval(ratio=ll.sift.ratio, radius=ll.sift.radius)
    out_dir = ctx.output_dir
    rows: list[dict[str, Any]] = []
    levels = debug_levels(levels, ctx.item_limit("test", len(levels)))
    for name, img in ctx.limit(dm.test_images, what="test images"):
        for li in levels:
            gamma = LEVELS[int(li)]
            dark = darken(img, gamma)
            out, times, _ = enhance(ll.method, dark, ll.mode, net, enhancer)
            row = {"image": name, "gamma": gamma, "method": ll.method, **_score(out, img, sift)}
            row.update({f"dark_{k}": v for k, v in _score(dark, img, sift).items()})
            row.update({f"time_{k}": v for k, v in times.items()})
            if times:  # "dark" has no processing time (the paper's "-")
                row["time"] = sum(times.values())
            rows.append(row)
            if ll.save_images:
                save_png(out_dir / "enhanced" / f"{name}_g{gamma:.3f}_{ll.method}.png", out)
        log.info("%s: %s", name, {k: round(v, 3) for k, v in rows[-1].items() if k == "psnr"})
    _write_csv(out_dir / "per_image.csv", rows)
    metrics.update(_aggregate(rows))

    if ll.figures.enabled and dm.test_images:
        _figures(ctx, ll, dm, net, sift)
    if ll.lowlight_output and dm.lowlight_images:
        _lowlight_folder(ctx, ll, dm, net)
    return metrics


def debug_levels(levels: list[int], limit: int | None) -> list[int]:
    """Under a debug limit of ``limit`` items: the original (if listed) and ``limit`` darkened
    levels evenly spread (at least one, so every ``test/*`` metric exists); else all levels."""
    if limit is None or limit >= len(levels):
        return levels
    dark = [li for li in levels if LEVELS[int(li)] != 1.0]
    keep = [li for li in levels if LEVELS[int(li)] == 1.0]
    if dark:
        picks = np.linspace(0, len(dark) - 1, max(limit, 1) + 2)[1:-1].round().astype(int)
        keep += [dark[i] for i in sorted(set(picks.tolist()))]
    log.info("trainer limits: %d of %d darkening levels", len(keep), len(levels))
    return keep


def _aggregate(rows: list[dict[str, Any]]) -> dict[str, float]:
    """test/* = mean over the darkened levels; test/orig_psnr over the original level."""
    dark_rows = [r for r in rows if r["gamma"] > 1.0]
    orig_rows = [r for r in rows if r["gamma"] == 1.0]
    out: dict[str, float] = {}
    keys = sorted({k for r in rows for k in r if k not in ("image", "gamma", "method")})
    for key in keys:
        vals = [r[key] for r in dark_rows if key in r and np.isfinite(r[key])]
        if vals:
            out[f"test/{key}"] = float(np.mean(vals))
    if orig_rows:
        vals = [min(r["psnr"], 100.0) for r in orig_rows]  # identity on the original = inf dB
        out["test/orig_psnr"] = float(np.mean(vals))
    # PSNR per darkening level (gamma 1 = the original): over-brightening of mildly dark or
    # normally exposed inputs shows here, not in the mean over the 25 darkened levels.
    for gamma in sorted({r["gamma"] for r in rows}):
        level = [r for r in rows if r["gamma"] == gamma]
        out[f"test/psnr_g{gamma:.2f}"] = float(np.mean([min(r["psnr"], 100.0) for r in level]))
        out[f"test/dark_psnr_g{gamma:.2f}"] = float(
            np.mean([min(r["dark_psnr"], 100.0) for r in level])
        )
    out["test/n_images"] = float(len({r["image"] for r in rows}))
    return out


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    keys = sorted(
        {k for r in rows for k in r}, key=lambda k: (k not in ("image", "gamma", "method"), k)
    )
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, keys)
        writer.writeheader()
        writer.writerows(rows)


def _figures(ctx: RunContext, ll: DictConfig, dm, net, sift: SiftRetrieval) -> None:
    """Grid dark/reference/GPE/ours@k/LIME/original and PSNR, time vs k on the figure images.

    GPE is shown as published: unique-pair selection on the Y channel with the LM reference CNN
    (on RGB its unique set holds ~5000 pairs per 256x256 image, an O(n^3) GP fit of minutes).
    """
    fig = ll.figures
    gamma = LEVELS[int(fig.level)]
    images = dm.test_images[: int(fig.n_images)]
    if net is None:  # the method needs no CNN; the grid still shows ours
        net = reference_cnn(ctx, ll.mode, {})
    lm_net = None
    if fig.gpe:
        lm_net = net if ll.mode == "lm" else reference_cnn(ctx, "lm", {}, extra=True)
    columns: list[str] = ["dark", f"reference ({ll.mode.upper()})"]
    columns += ["GPE (LM)"] if fig.gpe else []
    ks = [int(k) for k in fig.ks]
    columns += [f"ours {ll.mode.upper()} k={k}" for k in ks] + ["LIME", "original"]
    grid: list[list[np.ndarray]] = []
    curve: dict[int, list[tuple[float, float]]] = {k: [] for k in ks}
    for _, img in images:
        dark = darken(img, gamma)
        ref = reference_planes(net, dark, ll.mode)
        row = [dark, _reference_rgb(ref, dark, ll.mode)]
        if fig.gpe:
            gpe = _enhancer(ll, "gpe", mode="lm")
            row.append(enhance("gpe", dark, "lm", lm_net, gpe)[0])
        for k in ks:
            out, times, _ = enhance("ours", dark, ll.mode, net, _enhancer(ll, "ours", k=k))
            row.append(out)
            curve[k].append((psnr(out, img), sum(times.values())))
        row += [lime_enhance(dark), img]
        grid.append(row)
    figs = ctx.figures_dir()
    grid_png = save_grid(figs / "grid.png", grid, columns, title=f"gamma = {gamma:.2f}")
    ctx.log_figure("figures/grid", grid_png)
    k_png = save_k_curve(
        figs / "psnr_time_vs_k.png",
        ks,
        [float(np.mean([c[0] for c in curve[k]])) for k in ks],
        [float(np.mean([c[1] for c in curve[k]])) for k in ks],
        title=f"{ll.mode.upper()}, {len(images)} image(s), gamma = {gamma:.2f}",
    )
    ctx.log_figure("figures/psnr_time_vs_k", k_png)


def _reference_rgb(ref: np.ndarray, dark: np.ndarray, mode: str) -> np.ndarray:
    from models.lowlight_gp.enhancer import from_planes

    return from_planes(ref, dark, mode)


def _lowlight_folder(ctx: RunContext, ll: DictConfig, dm, net) -> None:
    """Real low-light images: input | ours | LIME side by side, one PNG each."""
    if net is None:
        net = reference_cnn(ctx, ll.mode, {})
    enhancer = _enhancer(ll, "ours")
    for name, img in ctx.limit(dm.lowlight_images, what="low-light images"):
        ours, _, _ = enhance("ours", img, ll.mode, net, enhancer)
        save_png(
            ctx.output_dir / "lowlight" / f"{name}.png",
            np.concatenate([img, ours, lime_enhance(img)], 1),
        )
