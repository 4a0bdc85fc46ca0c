"""Building loggers, callbacks and trainers must not move the global RNGs.

A logger that draws a random run name, a config tree instantiated for display, a progress bar:
any of them consuming the global python / numpy / torch streams between ``seed_everything`` and
a later random step (a model built by a pipeline, an unseeded shuffle) would make the choice of
``logger=`` or ``callbacks=`` change the numbers. The builders run under :func:`keeps_global_rng`.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
import torch

F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def global_rng_restored() -> Iterator[None]:
    """Restore python's, numpy's and torch's (CPU and CUDA) global RNG states on exit."""
    py, npy = random.getstate(), np.random.get_state()  # noqa: NPY002 (the global state on purpose)
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)  # noqa: NPY002


def keeps_global_rng(fn: F) -> F:
    """Decorator: ``fn`` runs under :func:`global_rng_restored`."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with global_rng_restored():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
