"""GPE's published reference CNN (Loh, Liang & Chan 2019), loaded from its MatConvNet file.

``SPIC/cnnmodel.mat`` in cs-chan/Exclusively-Dark-Image-Dataset holds a ``net.layers`` cell
array (MatConvNet simplenn): conv 9x9x1x64 -> ReLU -> conv 1x1x64x32 -> ReLU ->
conv 5x5x32x16 -> sigmoid -> conv 5x5x16x1 -> sigmoid (then an MSE loss layer, unused here),
every convolution stride 1 and unpadded ("valid"), on a grey image in [0, 1]. MatConvNet
filters are (H, W, C_in, C_out) and applied as cross-correlation, like ``torch.conv2d``, so the
weights only need a transpose to (C_out, C_in, H, W).

The valid convolutions shrink an image by 16 pixels (8 on each side); we pad the input by
replicating its border so the reference covers every pixel the GP predicts (GPE's own border
handling is in its obfuscated code). The net is a single-plane (Y) mapping; on RGB (CM) it
is applied to each plane separately.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
import torch
import torch.nn.functional as F
from torch import nn

from core.errors import DataError

# (type, kernel, c_in, c_out) of the published net, in order; activations between them.
LAYOUT = (
    ("conv", 9, 1, 64),
    ("relu",),
    ("conv", 1, 64, 32),
    ("relu",),
    ("conv", 5, 32, 16),
    ("sigmoid",),
    ("conv", 5, 16, 1),
    ("sigmoid",),
)
BORDER = sum((layer[1] - 1) // 2 for layer in LAYOUT if layer[0] == "conv")  # 8 px


class GPEReferenceCNN(nn.Module):
    """GPE's 9-1-5-5 reference CNN; ``in_channels`` planes are mapped one by one."""

    def __init__(self, in_channels: int = 1, weights: str | Path | None = None) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 (LM) or 3 (CM), got {in_channels}")
        self.in_channels = in_channels
        layers: list[nn.Module] = []
        for spec in LAYOUT:
            if spec[0] == "conv":
                _, k, c_in, c_out = spec
                layers.append(nn.Conv2d(c_in, c_out, k))
            else:
                layers.append(nn.ReLU() if spec[0] == "relu" else nn.Sigmoid())
        self.body = nn.Sequential(*layers)
        if weights is not None:
            self.load_mat(weights)

    def load_mat(self, path: str | Path) -> GPEReferenceCNN:
        """Copy the filters and biases of a MatConvNet ``cnnmodel.mat`` into this net."""
        convs = [m for m in self.body if isinstance(m, nn.Conv2d)]
        mats = read_matconvnet(path)
        with torch.no_grad():
            for conv, (w, b) in zip(convs, mats):
                conv.weight.copy_(torch.from_numpy(w))
                conv.bias.copy_(torch.from_numpy(b))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [0, 1] -> (B, C, H, W) reference in [0, 1] (same size)."""
        b, c, h, w = x.shape
        planes = x.reshape(b * c, 1, h, w)
        planes = F.pad(planes, (BORDER,) * 4, mode="replicate")
        return self.body(planes).reshape(b, c, h, w)


def read_matconvnet(path: str | Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(weight (C_out, C_in, k, k), bias (C_out,)) float32 per conv layer of ``path``, checked
    against :data:`LAYOUT`; a file in another layout is a :class:`DataError` naming it."""
    path = Path(path)
    try:
        mat = scipy.io.loadmat(str(path))
        layers = mat["net"]["layers"][0, 0].ravel()
    except (OSError, ValueError, KeyError, IndexError, TypeError) as err:
        raise DataError(f"{path}: not a MatConvNet model with net.layers ({err})") from err
    types = [str(layer[0, 0]["type"].ravel()[0]) for layer in layers]
    want = [spec[0] for spec in LAYOUT]
    if types[: len(want)] != want:
        raise DataError(f"{path}: layer types {types}, expected {want} (+ a loss layer)")
    out = []
    for layer, spec in zip(layers, LAYOUT):
        if spec[0] != "conv":
            continue
        _, k, c_in, c_out = spec
        entry = layer[0, 0]
        params = entry["weights"].ravel()
        if len(params) == 1 and params.dtype == object:  # {filters, biases} nested once more
            params = np.asarray(params[0]).ravel()
        if len(params) != 2:
            raise DataError(f"{path}: a conv layer holds {len(params)} arrays, not 2")
        w, b = (np.asarray(v, dtype=np.float32) for v in params)
        w = w.reshape(k, k, c_in, c_out)  # MATLAB drops trailing singleton dimensions
        if b.size != c_out:
            raise DataError(f"{path}: conv {k}x{k}x{c_in}x{c_out} has {b.size} biases")
        for field in ("stride", "pad"):
            value = np.asarray(entry[field]).ravel() if field in entry.dtype.names else [1, 0]
            if field == "stride" and not np.all(np.asarray(value) == 1):
                raise DataError(f"{path}: stride {value} (expected 1)")
            if field == "pad" and not np.all(np.asarray(value) == 0):
                raise DataError(f"{path}: padding {value} (expected valid convolutions)")
        out.append((np.ascontiguousarray(w.transpose(3, 2, 0, 1)), b.reshape(c_out)))
    return out
