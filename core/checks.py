"""Config checks that run before any data is read.

Constructors of datamodules and modules call these so that a wrong value fails in the first
second with a message naming the key, the value given and what is allowed.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A config value is invalid; the message says which key and how to fix it."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"{key}: {message}")


def check_choice(key: str, value: Any, choices: Iterable[Any]) -> Any:
    """Fail unless ``value`` is one of ``choices``."""
    allowed = list(choices)
    if value not in allowed:
        raise ConfigError(key, f"got {value!r}; allowed values: {', '.join(map(repr, allowed))}")
    return value


def check_range(
    key: str,
    value: float,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Fail unless ``low <= value <= high`` (``<`` on an open side)."""
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    interval = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ConfigError(key, f"got {value!r}; expected a number in {interval}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        raise ConfigError(key, f"got {value!r}; allowed values: {interval}")
    return value


def check_positive(key: str, value: float, integer: bool = False) -> float:
    """Fail unless ``value`` > 0 (and an integer when ``integer``)."""
    if integer and (not isinstance(value, int) or isinstance(value, bool)):
        raise ConfigError(key, f"got {value!r}; expected a positive integer")
    return check_range(key, value, low=0, low_open=True)


def check_data_dir(key: str, path: str | Path, how_to_get: str) -> Path:
    """Fail unless ``path`` is an existing directory; the message says how to get the data."""
    p = Path(path).expanduser()
    if not p.is_dir():
        raise ConfigError(
            key,
            f"data directory {str(p)!r} does not exist. {how_to_get} "
            f"Or leave {key}=null to use the embedded offline dataset.",
        )
    return p


def check_file(key: str, path: str | Path, what: str = "file") -> Path:
    """Fail unless ``path`` is an existing file."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(key, f"{what} {str(p)!r} does not exist")
    return p
