"""One convention for every command-line tool (rmod.cli.run, dose_model.cli.run): expected
errors exit 2 as one line, bugs exit 3 with their traceback, --debug shows tracebacks, Ctrl-C
exits 130, a reader that goes away ends the tool quietly with 141, and help shows defaults
through one formatter."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

import pytest

import dose_model.cli
import rmod.cli
from rmod_dose_common import cli as common_cli
from tests.integration.test_packaging import SCRIPTS


def _main(name: str):
    module_name, func_name = SCRIPTS[name].split(":")
    return getattr(importlib.import_module(module_name), func_name)


def _parsers(name: str) -> list[argparse.ArgumentParser]:
    """The parser of a console script and those of its subcommands."""
    module = importlib.import_module(SCRIPTS[name].split(":")[0])
    parser = module.build_parser()
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found += list(action.choices.values())
    return found


def _shown(default) -> str:
    if isinstance(default, (list, tuple)):
        return " ".join(str(v) for v in default)
    return str(default)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_help_shows_defaults_through_the_formatter_only(name):
    """No help string writes its own default; every option with a meaningful default shows
    it as ``(default: X)``; None/False defaults show nothing; every tool has --debug."""
    for parser in _parsers(name):
        assert parser.formatter_class is common_cli.HelpFormatter, parser.prog
        text = " ".join(parser.format_help().split())
        assert "(default: None)" not in text and "(default: False)" not in text, parser.prog
        options = {s for a in parser._actions for s in a.option_strings}
        if not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions):
            assert "--debug" in options, parser.prog
        for action in parser._actions:
            words = (action.help or "").lower()
            assert "(default" not in words and "default:" not in words, (parser.prog, words)
            assert "%(default)" not in words, (parser.prog, action.dest)
            meaningful = action.default not in (None, False, argparse.SUPPRESS)
            if action.option_strings and meaningful and not action.required:
                assert f"(default: {_shown(action.default)})" in text, (parser.prog, action.dest)


def _err_lines(capsys) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


def test_expected_errors_exit_2_with_one_line_and_debug_shows_the_traceback(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    cases = [
        ("rmod-stats", [str(missing), "--no-progress", "--no-plots"], "no build.json"),
        ("rmod-verify", [str(tmp_path), "--jobs", "0"], "--jobs must be >= 1"),
        ("dose-tokenize", ["--verify", str(missing)], "not a token cache"),
        (
            "dose-eval",
            ["--manifest", str(missing), "--out", str(tmp_path / "o"), "--kick", "k.ckpt",
             "--codec-weights", str(missing / "w.pth")],
            "DAC weights file not found",
        ),
        (
            "dose-tokenize",
            ["--manifest", str(missing), "--out", str(tmp_path / "t"),
             "--codec-weights", str(missing / "w.pth")],
            "w.pth: DAC weights file not found",  # no resume hint: nothing started
        ),
    ]  # fmt: skip
    for name, argv, message in cases:
        assert _main(name)(argv) == 2, name
        lines = _err_lines(capsys)
        assert lines == [lines[0]] and lines[0].startswith(f"{name}: error: "), lines
        assert message in lines[0] and "rerun" not in lines[0]
        assert _main(name)([*argv, "--debug"]) == 2, name
        err = capsys.readouterr().err
        assert "Traceback (most recent call last)" in err and f"{name}: error: " in err
    assert not (tmp_path / "o").exists() and not (tmp_path / "t").exists()


def _boom(*args, **kwargs):
    raise ValueError("a bug, not an input problem")


@pytest.mark.parametrize(
    "name, module, function, argv",
    [
        ("rmod-stats", "rmod.cli.stats", "compute_stats", ["DIR", "--no-progress"]),
        ("rmod-verify", "rmod.cli.verify", "verify_dataset", ["DIR", "--no-progress"]),
        ("dose-tokenize", "dose_model.cli.tokenize", "verify_cache", ["--verify", "DIR"]),
        ("dose-train", "dose_model.train.pipeline", "train_from_manifest",
         ["--manifest", "DIR", "--drum", "kick", "--out", "RUN", "--tokens", "T"]),
    ],
)  # fmt: skip
def test_an_unexpected_error_is_a_bug_with_its_traceback(
    name, module, function, argv, monkeypatch, capsys
):
    """A ValueError from inside the work (which dose-tokenize and dose-train used to print
    as a one-line error) now exits 3 with the traceback naming where it came from."""
    monkeypatch.setattr(importlib.import_module(module), function, _boom)
    assert _main(name)(argv) == 3
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "in _boom" in err
    assert "ValueError: a bug, not an input problem" in err
    assert f"{name}: internal error (a bug)" in err


@pytest.mark.parametrize(
    "name, module, function, argv",
    [
        ("rmod-stats", "rmod.cli.stats", "compute_stats", ["DIR", "--no-progress"]),
        ("dose-tokenize", "dose_model.cli.tokenize", "verify_cache", ["--verify", "DIR"]),
    ],
)
def test_ctrl_c_exits_130_with_one_line(name, module, function, argv, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib.import_module(module), function, interrupted)
    assert _main(name)(argv) == 130
    assert _err_lines(capsys) == [f"{name}: interrupted"]


class _ClosedPipe:
    """A stdout whose reader went away."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


class _BufferedClosedPipe(_ClosedPipe):
    """The same, where the lines wait in a buffer until the flush."""

    def write(self, text: str) -> int:
        return len(text)


@pytest.mark.parametrize(
    "name, module, function, result, argv",
    [
        ("rmod-verify", "rmod.cli.verify", "verify_dataset", None, ["DIR", "--no-progress"]),
        ("dose-tokenize", "dose_model.cli.tokenize", "verify_cache", 4, ["--verify", "DIR"]),
    ],
)
def test_a_closed_pipe_ends_quietly_with_141(
    name, module, function, result, argv, monkeypatch, capsys, tmp_path
):
    from rmod.inspect.verify import verify_dataset

    if result is None:  # a real report of a folder that is no dataset: it prints lines
        result = verify_dataset(tmp_path, progress=False)
    monkeypatch.setattr(importlib.import_module(module), function, lambda *a, **k: result)
    for stdout in (_ClosedPipe(), _BufferedClosedPipe()):
        monkeypatch.setattr(sys, "stdout", stdout)
        assert _main(name)(argv) == common_cli.BROKEN_PIPE_STATUS == 141
        assert capsys.readouterr().err == ""


def test_a_closed_pipe_in_a_real_process_is_quiet(tmp_path):
    """The reader closes its end before the tool writes: no BrokenPipeError traceback, 141."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "rmod.cli.verify", str(tmp_path / "none"), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == ""


def test_sigterm_exits_143_through_the_dose_runner(capsys):
    """dose-train turns SIGTERM into Terminated while tokenizing; the runner maps it."""

    def work(args):
        raise common_cli.Terminated

    args = argparse.Namespace(debug=False)
    assert dose_model.cli.run("dose-x", work, args, hint="resume it") == 143
    assert _err_lines(capsys) == ["dose-x: terminated; resume it"]


def test_an_oserror_names_its_file_and_gets_the_hint(tmp_path, capsys):
    def work(args):
        open(tmp_path / "missing.txt")  # noqa: SIM115

    args = argparse.Namespace(debug=False)
    for run in (rmod.cli.run, dose_model.cli.run):
        line = f"tool: error: {tmp_path / 'missing.txt'}: No such file or directory"
        assert run("tool", work, args, hint="rerun it") == 2
        assert _err_lines(capsys) == [line]
        assert run("tool", work, args, hint="rerun it", hint_on_oserror=True) == 2
        assert _err_lines(capsys) == [f"{line}; rerun it"]


#: Exception classes that are no package error, and why.
NOT_PACKAGE_ERRORS: dict[str, str] = {}


@pytest.mark.parametrize("package", ["rmod", "dose_model"])
def test_every_error_class_derives_from_its_package_base(package):
    import inspect
    import pkgutil

    from dose_model.errors import DoseError
    from rmod.errors import RmodError

    base = {"rmod": RmodError, "dose_model": DoseError}[package]
    root = importlib.import_module(package)
    names = [package] + [m.name for m in pkgutil.walk_packages(root.__path__, f"{package}.")]
    found = []
    for name in names:
        module = importlib.import_module(name)
        for cls_name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != name or not issubclass(cls, BaseException):
                continue
            found.append(cls_name)
            if f"{name}.{cls_name}" not in NOT_PACKAGE_ERRORS:
                assert issubclass(cls, base), f"{name}.{cls_name} does not derive from {base}"
    assert len(found) >= 8, found  # the walk did find the package's errors


def test_a_bug_that_stops_a_build_shows_its_traceback_with_debug(
    small_library, tmp_path, monkeypatch, capsys
):
    """rmod-build reports a build stopped by an unexpected exception with its summary and
    status 1 (finished shards kept); ``--debug`` adds the exception's traceback."""
    import rmod.build.run
    from tests.rmod_fixtures import write_tiny_recipe

    def broken_run(tasks, summary, progress):
        raise RuntimeError("a bug in the scheduler")

    monkeypatch.setattr(rmod.build.run, "_run", broken_run)
    recipe = write_tiny_recipe(tmp_path, "rmod-drums-only")
    argv = ["--n", "2", "--recipe", recipe, "--library", str(small_library.path), "--jobs", "1",
            "--no-progress"]  # fmt: skip
    for debug in (False, True):
        out = tmp_path / f"ds-{debug}"
        assert _main("rmod-build")([*argv, "--out", str(out), *(["--debug"] * debug)]) == 1
        err = capsys.readouterr().err
        assert "the build stopped: RuntimeError: a bug in the scheduler" in err
        assert ("Traceback (most recent call last)" in err) == debug
        assert ('raise RuntimeError("a bug in the scheduler")' in err) == debug
