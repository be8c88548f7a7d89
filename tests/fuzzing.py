"""Run untrusted inputs one per child process, under resource limits, and judge how each ended.

Every tool promises that an input ends in a result or a one-line error (exit 0, 1 or 2) within
bounded time and memory: never a traceback (exit 3), never killed by a limit, never a hang.
This module checks that promise for one input at a time:

- :class:`Runner` is a fork server for one *target* (``"package.module:function"``, a function
  taking an argument list and returning an exit status, e.g. a tool's ``main``). It imports
  the target once (and any ``preload`` modules), then forks one child per input; the child
  sets ``RLIMIT_AS`` to the address space the imports took plus ``Limits.memory_bytes``,
  ``RLIMIT_CPU`` to ``Limits.cpu_seconds`` (SIGXCPU, then SIGKILL a second later), sends its
  output to files, calls the target and exits with its status. A child still running after
  ``Limits.wall_seconds`` (blocked on I/O) is killed with its process group. Forking skips the
  interpreter start and the imports (0.5 to 5 s), so a few hundred inputs fit a CI budget.
- :func:`run_fresh` runs one input in a new interpreter instead (``RLIMIT_AS`` is then
  ``memory_bytes`` in all), for targets that must not share an import state.
- :class:`Outcome` holds the exit status, output and time; ``Outcome.problem()`` says what
  broke the promise (None when nothing did).

Example::

    with Runner("dose_model.cli.extract:main", preload=["torch"]) as runner:
        outcome = runner.run([str(song), "--out", str(out), ...], label="rate 1 Hz")
    assert outcome.problem() is None, outcome.describe()

``python -m tests.fuzzing serve TARGET [PRELOAD...]`` is the server's own entry point (one JSON
request per line on its stdin, ``{"args": [...], "limits": {...}}``; one outcome back) and
``python -m tests.fuzzing once TARGET ARGS...`` the fresh one's; neither is meant for people.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parents[1]
#: Output kept per stream of a child (the end of it), in characters.
KEEP_CHARS = 20_000


@dataclass(frozen=True)
class Limits:
    """What one input may take: ``memory_bytes`` of address space beyond the imports',
    ``cpu_seconds`` of CPU time, ``wall_seconds`` of wall-clock time (a child blocked on I/O
    uses no CPU)."""

    memory_bytes: int = 2 << 30
    cpu_seconds: int = 20
    wall_seconds: float = 60.0


@dataclass(frozen=True)
class Outcome:
    """How one input ended: ``returncode`` (the exit status; ``-N`` when killed by signal N;
    None when it was still running at the wall limit and was killed), the tail of its
    ``stdout`` and ``stderr``, and its wall-clock ``seconds``."""

    label: str
    args: tuple[str, ...]
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float

    def problem(self, allowed: Collection[int] = (0, 1, 2)) -> str | None:
        """Why this input broke the promise, in one line; None when it did not. Exit 2 must
        print one ``<tool>: error: ...`` line (indented detail lines may follow it, as
        rmod-render-one's list of out-of-recipe parameters)."""
        rc = self.returncode
        if rc is None:
            return "still running at the wall-clock limit (a hang)"
        if rc < 0:
            name = signal.Signals(-rc).name
            why = {"SIGXCPU": " (the CPU limit)", "SIGKILL": " (the CPU limit or out of memory)"}
            return f"killed by {name}{why.get(name, '')}"
        if "Traceback (most recent call last)" in self.stderr:
            last = [ln for ln in self.stderr.splitlines() if ln.strip()]
            return f"exit {rc} with a traceback: {last[-1] if last else ''}"
        if rc not in allowed:
            return f"exit {rc}"
        if rc == 2:
            lines = [ln for ln in self.stderr.splitlines() if ln.strip()]
            errors = [i for i, ln in enumerate(lines) if ": error: " in ln]
            if len(errors) != 1 or any(not ln[0].isspace() for ln in lines[errors[0] + 1 :]):
                return "exit 2 without exactly one error line (details may follow, indented)"
        return None

    def describe(self) -> str:
        """The input, the problem and the end of its error output, for an assertion message."""
        tail = "\n    ".join(self.stderr.strip().splitlines()[-8:])
        return (
            f"{self.label or ' '.join(self.args)}: {self.problem() or 'ok'} after "
            f"{self.seconds:.1f} s\n    {tail}"
        )


def _target(name: str) -> Callable[[list[str]], int | None]:
    module, _, attr = name.partition(":")
    return getattr(importlib.import_module(module), attr or "main")


def _address_space() -> int:
    """This process's address space in bytes (``/proc/self/statm``; 0 where absent)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def _set_limits(limits: Limits, base: int) -> None:
    memory = base + limits.memory_bytes
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))


def _status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)  # SystemExit("message"), as the interpreter would
    return 1


def _call(fn: Callable[[list[str]], int | None], args: list[str]) -> int:
    """``fn(args)``'s exit status; a traceback and 3 for an exception (as the tools' runner)."""
    try:
        return _status(fn(args))
    except SystemExit as stop:
        return _status(stop.code)
    except BaseException:  # noqa: BLE001 - the child reports everything it did not expect
        traceback.print_exc()
        return 3


def _tail(path: Path) -> str:
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - KEEP_CHARS))
        return fh.read().decode("utf-8", "replace")


def _fork_one(
    fn: Callable[[list[str]], int | None], args: list[str], limits: Limits, work: Path
) -> dict:
    """Run ``fn(args)`` in a forked child under ``limits``; the outcome's fields."""
    out, err = work / "stdout", work / "stderr"
    sys.stdout.flush()
    sys.stderr.flush()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 3
        try:
            os.setpgid(0, 0)
            for fd, path, mode in ((0, os.devnull, os.O_RDONLY), (1, out, 0), (2, err, 0)):
                flags = mode or (os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                new = os.open(path, flags, 0o600)
                os.dup2(new, fd)
                os.close(new)
            _set_limits(limits, _address_space())
            code = _call(fn, args)
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    deadline = start + limits.wall_seconds
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            returncode: int | None = os.waitstatus_to_exitcode(status)
            break
        if time.monotonic() > deadline:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            returncode = None
            break
        time.sleep(0.005)
    seconds = time.monotonic() - start
    return {
        "returncode": returncode,
        "stdout": _tail(out),
        "stderr": _tail(err),
        "seconds": seconds,
    }


def _child_env(env: dict[str, str] | None) -> dict[str, str]:
    """The environment of a server or fresh run: ``env`` (default: this process's), the
    repository on ``PYTHONPATH`` (for ``tests``) and one thread per math library."""
    out = dict(os.environ if env is None else env)
    out["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), out.get("PYTHONPATH")]))
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        out.setdefault(name, "1")
    return out


class Runner:
    """A fork server running ``target`` on one input per child (see the module text).

    Args:
        target: ``"module:function"``; the function takes the argument list and returns an
            exit status (or raises ``SystemExit``).
        limits: what each input may take.
        preload: modules to import in the server before forking (e.g. ``torch``, so that a
            child does not pay for it).
        env: the server's environment (default: this process's), see :func:`_child_env`.
        cwd: its working folder (default: the repository).
    """

    def __init__(
        self,
        target: str,
        limits: Limits = Limits(),
        preload: Sequence[str] = (),
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike | None = None,
    ) -> None:
        self.target, self.limits = target, limits
        command = [sys.executable, "-m", "tests.fuzzing", "serve", target]
        self._proc = subprocess.Popen(
            [*command, *preload],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=_child_env(env),
            cwd=cwd or ROOT,
            text=True,
        )
        ready = self._proc.stdout.readline()
        if ready.strip() != "ready":
            self.close()
            raise RuntimeError(f"the fork server for {target} did not start: {ready!r}")

    def run(self, args: Sequence[str], label: str = "", limits: Limits | None = None) -> Outcome:
        """Run the target on ``args`` in a fresh child (under ``limits``, default the
        runner's); how it ended."""
        request = {"args": [str(a) for a in args], "limits": asdict(limits or self.limits)}
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()
        reply = self._proc.stdout.readline()
        if not reply:
            raise RuntimeError(f"the fork server for {self.target} died")
        return Outcome(label, tuple(map(str, args)), **json.loads(reply))

    def close(self) -> None:
        """Stop the server (again is harmless)."""
        if self._proc.poll() is None:
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc.stdout.close()

    def __enter__(self) -> Runner:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def run_fresh(
    target: str,
    args: Sequence[str],
    limits: Limits = Limits(),
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    label: str = "",
) -> Outcome:
    """Run ``target`` on ``args`` in a new interpreter whose address space (imports included)
    is capped at ``limits.memory_bytes``; how it ended."""
    start = time.monotonic()

    def limit() -> None:
        os.setpgid(0, 0)
        _set_limits(limits, 0)

    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fuzzing", "once", target, *map(str, args)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_child_env(env),
        cwd=cwd or ROOT,
        preexec_fn=limit,
    )
    try:
        out, err = proc.communicate(timeout=limits.wall_seconds)
        returncode: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        returncode = None
    text = [s.decode("utf-8", "replace")[-KEEP_CHARS:] for s in (out, err)]
    return Outcome(label, tuple(map(str, args)), returncode, *text, time.monotonic() - start)


def _serve(target: str, preload: Sequence[str]) -> None:
    for module in preload:
        importlib.import_module(module)
    fn = _target(target)
    protocol = os.fdopen(os.dup(1), "w")  # the children write to files, never here
    with tempfile.TemporaryDirectory(prefix="fuzz-") as work:
        print("ready", file=protocol, flush=True)
        for line in sys.stdin:
            request = json.loads(line)
            outcome = _fork_one(fn, request["args"], Limits(**request["limits"]), Path(work))
            print(json.dumps(outcome), file=protocol, flush=True)


def main(argv: list[str]) -> int:
    """``serve TARGET [PRELOAD...]`` or ``once TARGET ARGS...``."""
    if argv[:1] == ["serve"]:
        _serve(argv[1], argv[2:])
        return 0
    if argv[:1] == ["once"]:
        return _call(_target(argv[1]), argv[2:])
    print("usage: python -m tests.fuzzing serve TARGET [PRELOAD...] | once TARGET ARGS...")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
