"""Image transforms per stage: MAE pre-training, linear probe, fine-tune, evaluation."""

from __future__ import annotations

from timm.data import create_transform
from torchvision import transforms as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STAGES = ("pretrain", "probe", "finetune")
FINETUNE_AUGMENTS = ("mae", "light")
# MAE's main_finetune.py: RandAugment m9 (std 0.5, increasing), random erasing 0.25 per pixel
MAE_AUTO_AUGMENT = "rand-m9-mstd0.5-inc1"
MAE_RE_PROB = 0.25


# smallest RandomResizedCrop area per stage: MAE's pre-training (0.2) and torchvision's
# default (0.08) for linear probe and fine-tune, as in MAE's recipes
MIN_CROP_SCALE = {"pretrain": 0.2, "probe": 0.08, "finetune": 0.08}


def train_transform(
    stage: str,
    img_size: int,
    hflip: bool = False,
    min_scale: float | None = None,
    randaugment_magnitude: int | None = 9,
    finetune_augment: str = "light",
) -> T.Compose:
    """Pre-training: RandomResizedCrop only (the paper); probe adds a flip (MAE's linprobe);
    fine-tuning adds a flip and RandAugment(2, ``randaugment_magnitude``) (MAE's rand-m9 recipe;
    None leaves it out). ``min_scale`` overrides the stage's smallest crop area
    (:data:`MIN_CROP_SCALE`)."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    if stage == "finetune" and finetune_augment == "mae":
        # timm's own factory, as MAE's build_transform: crop, flip, rand-m9, normalise, erase
        return create_transform(
            img_size,
            is_training=True,
            scale=(MIN_CROP_SCALE[stage] if min_scale is None else min_scale, 1.0),
            auto_augment=MAE_AUTO_AUGMENT,
            interpolation="bicubic",
            re_prob=MAE_RE_PROB,
            re_mode="pixel",
            re_count=1,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
        )
    ops: list = [
        T.RandomResizedCrop(
            img_size,
            scale=(MIN_CROP_SCALE[stage] if min_scale is None else min_scale, 1.0),
            interpolation=T.InterpolationMode.BICUBIC,
        )
    ]
    if hflip or stage != "pretrain":
        ops.append(T.RandomHorizontalFlip())
    if stage == "finetune" and randaugment_magnitude is not None:
        ops.append(T.RandAugment(num_ops=2, magnitude=randaugment_magnitude))
    ops += [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return T.Compose(ops)


def eval_transform(
    img_size: int,
    crop_ratio: float = 1.0,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> T.Compose:
    """Resize (then centre-crop when ``crop_ratio`` < 1, as for ImageNet) and normalise
    (``mean`` / ``std``: a checkpoint's own statistics at predict time)."""
    resize = int(round(img_size / crop_ratio))
    return T.Compose(
        [
            T.Resize(resize, interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(img_size),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )
