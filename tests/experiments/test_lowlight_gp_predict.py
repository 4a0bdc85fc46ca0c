"""pipeline=predict for lowlight_gp: a folder of photographs in, enhanced photographs out."""

from __future__ import annotations

import csv
import json

import numpy as np
from PIL import Image

from tests.experiments.test_lowlight_gp_e2e import TINY as E2E_TINY
from tests.helpers import run_experiment, run_predict

TINY = [
    *(o for o in E2E_TINY if not o.startswith("lowlight.levels")),
    "lowlight.levels=[12]",
    "lowlight.figures.enabled=false",
    "lowlight.lowlight_output=false",
    "lowlight.save_images=false",
]


def _photo(seed: int, h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 60, w)[None, :, None] + np.linspace(0, 30, h)[:, None, None]
    return np.clip(base + rng.normal(0, 4, (h, w, 3)), 0, 255).astype(np.uint8)


def test_predict_enhances_a_folder_keeping_paths_orientation_and_names(tmp_path):
    _, run_dir = run_experiment(TINY, tmp_path)
    inputs = tmp_path / "photos"
    (inputs / "trip").mkdir(parents=True)
    Image.fromarray(_photo(0, 40, 48)).save(inputs / "trip" / "night.jpg", quality=95)
    Image.fromarray(_photo(1, 32, 32)[..., 0]).save(inputs / "grey.png")  # mode L
    Image.fromarray(np.dstack([_photo(2, 32, 32), np.full((32, 32), 200, np.uint8)])).save(
        inputs / "alpha.png"
    )  # RGBA
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.fromarray(_photo(3, 24, 40)).save(inputs / "phone.jpg", exif=exif.tobytes())
    whole = inputs / "trip" / "night.jpg"
    (inputs / "cut.jpg").write_bytes(whole.read_bytes()[: len(whole.read_bytes()) // 3])
    (inputs / "notes.txt").write_text("not an image")

    out = tmp_path / "enhanced"
    proc = run_predict("lowlight_gp", run_dir, inputs, out, tmp_path, "predict_run")
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((out / "predict_summary.json").read_text())
    assert list(summary["skipped"]) == [str(inputs / "cut.jpg")]
    assert len(summary["predicted"]) == 4

    night = Image.open(out / "trip" / "night.png")  # lossy JPEG in -> PNG out, same place
    assert night.size == (48, 40) and night.mode == "RGB"
    assert Image.open(out / "grey.png").mode == "RGB"
    assert Image.open(out / "alpha.png").size == (32, 32)
    assert Image.open(out / "phone.png").size == (24, 40)  # upright: EXIF rotation applied
    brighter = np.asarray(night, np.float64).mean()
    assert brighter > np.asarray(Image.open(whole), np.float64).mean()

    with open(out / "timing.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["image"] for r in rows} == {"trip/night.jpg", "grey.png", "alpha.png", "phone.jpg"}
    for key in ("read", "cnn", "cluster", "gp_fit", "predict", "total"):
        assert all(float(r[key]) >= 0 for r in rows), key
