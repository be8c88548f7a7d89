"""The installed package: console scripts answer --help, torch range admits the on-disk build."""

from __future__ import annotations

import configparser
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


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


SUBCOMMANDS = {"rmod-library": ("index", "info", "soundfont")}


def _helps(name: str, capsys) -> list[str]:
    """The --help text of a command and of each of its subcommands."""
    texts = []
    for argv in [(), *((sub,) for sub in SUBCOMMANDS.get(name, ()))]:
        module_name, func_name = SCRIPTS[name].split(":")
        main = getattr(importlib.import_module(module_name), func_name)
        with pytest.raises(SystemExit) as exc:
            main([*argv, "--help"])
        assert exc.value.code == 0, (name, argv)
        texts.append(capsys.readouterr().out)
    return texts


#: "-h, --help", "--seed SEED", "--split {train,valid,test}", "--files FILE [FILE ...]"
OPTION_HEAD = r"-{1,2}[\w-]+( [A-Z_{\[][^ ]*( [^ ]+)*)?(, -{1,2}[\w-]+( [A-Z_{\[][^ ]*)?)*"


def _explained_options(text: str) -> dict[str, bool]:
    """Long options of an argparse help text (the option lines of its argument sections),
    each with whether a description follows it."""
    lines = text.splitlines()
    found: dict[str, bool] = {}
    in_section = False
    for i, line in enumerate(lines):
        if not line.strip():
            in_section = False
        elif not line.startswith(" ") and line.rstrip().endswith(":"):
            in_section = True  # "options:", or an argument group's title
        elif in_section and re.match(r"^  -", line):
            head, _, rest = line.strip().partition("  ")
            if not re.fullmatch(OPTION_HEAD, head):
                continue  # prose in an epilog that starts with an option's name
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            described = bool(rest.strip()) or (
                nxt.startswith(" " * 8) and not nxt.strip().startswith("-")
            )
            for option in re.findall(r"--[a-z0-9][a-z0-9-]*", head):
                found[option] = described
    return found


def _readme_options(name: str) -> set[str]:
    """Long options written after ``name`` in the code blocks of the README and of every page
    of docs/ (commands and the indented continuation lines of a usage block)."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    text = "\n".join(page.read_text(encoding="utf-8") for page in pages)
    options: set[str] = set()
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        current = False
        for line in block.splitlines():
            command = line.removeprefix("$ ").strip()
            if command.split(" ", 1)[0] == name:
                current = True
            elif not (current and line.startswith(" ")):
                current = False
            if current:
                options |= set(re.findall(r"(?<![\w-])--[a-z0-9][a-z0-9-]*", command.split("#")[0]))
    return options


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_every_option_is_explained_and_the_readme_uses_real_ones(name, capsys):
    """Each command (and subcommand) answers --help; every option it has carries a
    description; every option the README or docs/ write after the command exists."""
    texts = _helps(name, capsys)
    assert all("usage:" in t for t in texts)
    options: dict[str, bool] = {}
    for text in texts:
        options.update(_explained_options(text))
    assert len(options) >= 2, name
    unexplained = sorted(o for o, ok in options.items() if not ok and o != "--help")
    assert not unexplained, f"{name}: options without a description: {unexplained}"
    unknown = sorted(_readme_options(name) - set(options))
    assert not unknown, f"README/docs use {name} options that do not exist: {unknown}"


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


def test_every_cuda_test_is_marked_gpu():
    """CUDA-only tests are selected by the ``gpu`` marker (``benchmarks/gpu_check.sh`` runs
    ``-m 'gpu and not slow'``), so each test skipped without CUDA must carry it."""
    unmarked = []
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        decorators: list[str] = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("@"):
                decorators.append(line)
            elif line.startswith("def test"):
                text = " ".join(decorators)
                if "cuda.is_available()" in text and "pytest.mark.gpu" not in text:
                    unmarked.append(f"{path.name}: {line.split('(')[0][4:]}")
                decorators = []
            elif not line.startswith((" ", ")")):
                decorators = []
    assert not unmarked, unmarked
