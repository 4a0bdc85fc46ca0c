"""The layering of docs/conventions.md, read from every module's imports with ``ast``.

core <- models, losses <- datamodules <- experiments/<paper>; experiments/runner imports no paper.
A paper's folder imports only its own paper's folders (and core), so papers stay independent.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OURS = ("core", "models", "losses", "datamodules", "experiments")
PAPERS = ("sleep_tsr", "deep_gmm", "sd_mae", "frailty", "lowlight_gp", "example")

# layer -> layers it may import (besides itself)
ALLOWED = {
    "core": set(),
    "models": {"core"},
    "losses": {"core"},
    "datamodules": {"core"},
    "experiments": {"core", "models", "losses", "datamodules"},
}


def _our_imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return [n for n in names if n.split(".")[0] in OURS]


def _modules() -> list[Path]:
    return sorted(p for layer in OURS for p in (ROOT / layer).rglob("*.py"))


def _violation(src: Path, target: str) -> str | None:
    parts = src.relative_to(ROOT).with_suffix("").parts
    layer, group = parts[0], parts[1] if len(parts) > 2 else None
    t_parts = target.split(".")
    t_layer, t_group = t_parts[0], t_parts[1] if len(t_parts) > 1 else None
    if t_layer != layer and t_layer not in ALLOWED[layer]:
        return f"{layer} may not import {t_layer}"
    if layer == "experiments" and group == "runner":
        if t_layer != "core" and not (t_layer == "experiments" and t_group == "runner"):
            return "the runner imports nothing paper-specific"
        return None
    if group in PAPERS and t_layer != "core" and t_group in PAPERS and t_group != group:
        return f"paper {group!r} may not import paper {t_group!r}"
    return None


def test_every_module_respects_the_layering():
    bad = [
        f"{src.relative_to(ROOT)} imports {target}: {why}"
        for src in _modules()
        for target in _our_imports(src)
        if (why := _violation(src, target))
    ]
    assert not bad, "\n".join(bad)


def test_the_layering_check_catches_a_forbidden_import():
    assert _violation(ROOT / "datamodules/sd_mae/folder.py", "experiments.runner.task")
    assert _violation(ROOT / "models/sd_mae/mae.py", "datamodules.sd_mae.folder")
    assert _violation(ROOT / "experiments/runner/task.py", "experiments.sleep_tsr.module")
    assert _violation(ROOT / "experiments/frailty/module.py", "models.sd_mae.mae")
    assert _violation(ROOT / "datamodules/frailty/reader.py", "core.checks") is None


def test_experiments_has_one_package_per_paper_and_no_flat_modules():
    flat = sorted(p.name for p in (ROOT / "experiments").glob("*.py"))
    assert flat == ["__init__.py"]
    packages = {p.name for p in (ROOT / "experiments").iterdir() if (p / "__init__.py").exists()}
    assert packages == set(PAPERS) | {"runner"}


def _lower_modules() -> list[str]:
    mods = []
    for layer in ("core", "models", "losses", "datamodules"):
        for p in sorted((ROOT / layer).rglob("*.py")):
            mod = ".".join(p.relative_to(ROOT).with_suffix("").parts)
            mods.append(mod.removesuffix(".__init__"))
    return mods


def test_importing_the_lower_layers_registers_no_resolver_and_loads_no_runner():
    """In a fresh interpreter: import every module of core, models, losses, datamodules."""
    code = (
        "import importlib, sys\n"
        "from omegaconf import OmegaConf\n"
        f"for m in {_lower_modules()!r}: importlib.import_module(m)\n"
        "assert not OmegaConf.has_resolver('run_dir_or'), 'run_dir_or registered'\n"
        "assert not OmegaConf.has_resolver('launch_dir'), 'launch_dir registered'\n"
        "loaded = [m for m in sys.modules if m.startswith('experiments')]\n"
        "assert not loaded, f'imported {loaded}'\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]


def test_the_runner_registers_its_resolvers():
    code = (
        "import experiments.runner\n"
        "from omegaconf import OmegaConf\n"
        "assert OmegaConf.has_resolver('run_dir_or') and OmegaConf.has_resolver('launch_dir')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
