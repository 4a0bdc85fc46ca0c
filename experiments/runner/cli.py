"""The user-error contract of ``run.py``: one line naming key, value and what is allowed, exit 2.

Hydra reports its own composition errors (an unknown key, a typo in an override or a sweep key,
an unknown ``+experiment``) as multi-line messages with exit code 1, and a ``ConfigError`` or a
``DataError`` raised in a job would end in a traceback. ``guarded`` runs the Hydra entry point
with Hydra's own reporting turned off and turns each of these into a single line:

    Config error: trainer.max_epoch: unknown key in 'trainer.max_epoch=3' (did you mean: max_epochs?) ...
    Data error: data/sleep-cassette/SC4001E0-PSG.edf: truncated EDF record 12

Any other exception keeps its full traceback (exit 1): it is a bug, not a user mistake.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.checks import ConfigError
from core.errors import DataError

CONFIG_EXIT = DATA_EXIT = 2
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def find_cause(err: BaseException, kind: type[BaseException]) -> BaseException | None:
    """``err`` or the first exception of type ``kind`` in its cause/context chain."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, kind):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def one_line(text: str) -> str:
    """The message on one line; a DataLoader worker's re-raised error keeps its last line."""
    text = str(text).strip()
    if "Original Traceback" in text:
        text = text.splitlines()[-1].split(": ", 1)[-1]
    return re.sub(r"\s*\n\s*", "; ", text)


def _overrides(argv: list[str]) -> list[str]:
    return [a for a in argv if "=" in a and not a.startswith("-")]


def _override_for(key: str, argv: list[str]) -> str | None:
    for item in _overrides(argv):
        if item.split("=", 1)[0].lstrip("+~") == key:
            return item
    return None


def _composed_keys(parent: str, argv: list[str], skip: str) -> list[str]:
    """Keys under ``parent`` in the config composed from the group choices of ``argv`` alone."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import DictConfig, OmegaConf

    groups = [
        o
        for o in _overrides(argv)
        if "." not in o.split("=", 1)[0]
        and "," not in o.split("=", 1)[1]
        and o.split("=", 1)[0].lstrip("+~") != skip
    ]
    try:
        GlobalHydra.instance().clear()
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=groups)
        node = OmegaConf.select(cfg, parent) if parent else cfg
        return [str(k) for k in node] if isinstance(node, DictConfig) else []
    except Exception:
        return []


def _unknown_key(full_key: str, argv: list[str]) -> str:
    from experiments.runner.schema import close_matches, trainer_arguments

    parent, _, leaf = full_key.rpartition(".")
    candidates = _composed_keys(parent, argv, full_key)
    if parent == "trainer":
        candidates = sorted(set(candidates) | set(trainer_arguments()))
    given = _override_for(full_key, argv)
    where = f" in {given!r}" if given else ""
    hint = close_matches(leaf, candidates)
    value = given.split("=", 1)[1] if given else "<value>"
    return (
        f"{full_key}: unknown key{where}{hint}; to add a new key on purpose write "
        f"+{full_key}={value}"
    )


def describe_hydra_error(err: BaseException, argv: list[str]) -> str | None:
    """A one-line ``key: problem`` for Hydra's composition/override errors, else None."""
    from hydra.errors import (
        ConfigCompositionException,
        MissingConfigException,
        OverrideParseException,
    )

    missing = find_cause(err, MissingConfigException)
    if missing is not None:
        text = str(missing).strip().splitlines()[0]
        m = re.search(r"Could not (?:find|load) '([^']+)'", text)
        path = m.group(1) if m else (missing.missing_cfg_file or "?")
        group, _, name = path.rpartition("/")
        options = list(missing.options or [])
        if not options and group:
            options = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
        allowed = f"; allowed values: {', '.join(options)}" if options else ""
        return f"{group or 'config'}: got {name!r} ({text}){allowed}"
    parse = find_cause(err, OverrideParseException)
    if parse is not None:
        return f"override: {one_line(str(parse))}"
    comp = find_cause(err, ConfigCompositionException)
    if comp is None:
        return None
    text = str(comp)
    cause = comp.__cause__
    full_key = getattr(cause, "full_key", None) if cause is not None else None
    m = re.search(r"Could not override '([^']+)'", text)
    if m and ("not in struct" in text or "not in struct" in str(cause)):
        return _unknown_key(full_key or m.group(1), argv)
    m = re.search(r"Could not (?:append to config|delete)[^']*'([^']+)'", text)
    key = full_key or (m.group(1) if m else "override")
    detail = one_line(text if cause is None else f"{text} {cause}")
    return f"{key}: {detail}"


@contextmanager
def user_errors(argv: list[str] | None = None) -> Iterator[None]:
    """Turn a user error raised inside into one line on stderr and ``SystemExit(2)``.

    Used around the whole command (Hydra's composition errors) and around the task itself, so
    that Hydra does not add its own "Error executing job" report to the line.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        yield
    except Exception as err:
        config = find_cause(err, ConfigError)
        if config is not None:
            _fail("Config error", one_line(str(config)), CONFIG_EXIT)
        data = find_cause(err, DataError)
        if data is not None:
            _fail("Data error", one_line(str(data)), DATA_EXIT)
        message = describe_hydra_error(err, argv)
        if message is not None:
            _fail("Config error", message, CONFIG_EXIT)
        raise


def guarded(main: Callable[[], Any], argv: list[str] | None = None) -> Any:
    """Run ``main`` (a ``@hydra.main`` function) with the user-error contract."""
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach us instead of Hydra's printer
    with user_errors(argv):
        return main()


def _fail(kind: str, message: str, code: int) -> None:
    print(f"{kind}: {message}", file=sys.stderr)
    raise SystemExit(code) from None
