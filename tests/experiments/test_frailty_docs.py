"""Every ``python run.py ...`` command in docs/frailty.md parses exactly as a shell and Hydra
would read it: split like bash (quotes, ``\\`` continuations, comments), then composed with
Hydra's compose API and resolved (no data read, nothing trained)."""

import re
import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import experiments.runner  # noqa: F401  (registers the runner's resolvers)

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "frailty.md"


def doc_commands(text: str) -> list[str]:
    """``python run.py`` commands from the fenced ```bash blocks, continuations joined."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip().startswith("python run.py"):
                commands.append(line.strip())
    return commands


COMMANDS = doc_commands(DOC.read_text())


def test_the_doc_has_commands_including_gstride():
    assert len(COMMANDS) >= 10
    assert any("datamodule=frailty/gstride" in c for c in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_documented_command_composes(command):
    argv = shlex.split(command, comments=True)
    assert argv[:2] == ["python", "run.py"], command
    overrides = [a for a in argv[2:] if a not in ("-m", "--multirun")]
    assert all(not a.startswith("-") for a in overrides), f"unknown flag in {command}"
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides)
    cfg.paths.output_dir = "job-dir"  # set by Hydra at run time
    keys = [k for k in cfg if k != "hydra"]
    resolved = OmegaConf.to_container(OmegaConf.masked_copy(cfg, keys), resolve=True)
    assert resolved["task_name"].startswith("frailty")
    if "datamodule=frailty/gstride" in command:  # every ??? of the GSTRIDE file filled in
        assert "{id}" in resolved["datamodule"]["schema"]["recording_pattern"]
        assert not OmegaConf.missing_keys(cfg.datamodule)


def test_unquoted_pattern_is_caught():
    """The bug this guards against: the shell strips the quotes and Hydra refuses '{'."""
    bad = "python run.py +experiment=frailty datamodule.schema.recording_pattern='raw/{id}/a.csv'"
    overrides = shlex.split(bad)[2:]
    with (
        initialize_config_dir(str(ROOT / "conf"), version_base="1.3"),
        pytest.raises(Exception, match="mismatched input|token recognition"),
    ):
        compose("config", overrides)
