"""The installed package: console scripts answer --help, torch range admits the on-disk build."""

from __future__ import annotations

import configparser
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _console_scripts() -> dict[str, str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = cfg["options.entry_points"]["console_scripts"].strip().splitlines()
    return dict(tuple(part.strip() for part in line.split("=", 1)) for line in lines)


SCRIPTS = _console_scripts()


def test_every_planned_command_is_declared():
    expected = {
        "rmod-library",
        "rmod-render-one",
        "rmod-build",
        "rmod-verify",
        "rmod-stats",
        "dose-tokenize",
        "dose-train",
        "dose-extract",
        "dose-eval",
    }
    assert expected <= set(SCRIPTS)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_console_script_help_lists_options_with_defaults(name, capsys):
    module_name, func_name = SCRIPTS[name].split(":")
    main = getattr(importlib.import_module(module_name), func_name)
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage:" in out and "--help" in out


def test_torch_requirement_admits_the_on_disk_build():
    from packaging.requirements import Requirement

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    reqs = [
        Requirement(line.split("#")[0].strip())
        for line in cfg["options"]["install_requires"].splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    torch_req = next(r for r in reqs if r.name == "torch")
    assert torch_req.specifier.contains("2.13.0")
    # An open upper bound would let pip pull a multi-GB CUDA build of a newer release.
    assert not torch_req.specifier.contains("2.14.0")
