"""Token sinks: where ``rmod-build --tokens`` sends each rendered example instead of files.

A sink turns rendered audio into something else (a model's token cache) inside the build:
the workers render as usual, compute every row (checksums and sizes of the files included,
in memory) and hand ``(row, audio)`` to the sink instead of writing files; the dataset
folder gets ``build.json`` and the manifests, whose rows say ``"stored": false``. Any
example's files can be rendered again later from its row (``rmod-render-one --from``),
byte-identical to the recorded checksums.

rmod never imports a sink's package: an implementation is found by name among the
installed ``importlib.metadata`` entry points of the group :data:`SINK_GROUP`
(``dose_model`` registers ``dac``, its DAC token cache; see ``setup.cfg``), and is called
only through the :class:`TokenSink` protocol below. Its life in a build:

- in the planning process: constructed from :class:`SinkSpec` (it checks its options and
  writes nothing), then ``open()`` once under the build's lock (create or check its
  output, clean what killed runs left), ``has_shard()`` for every shard on resume, and
  ``close(manifests)`` once every shard is committed and the manifests are written;
- in a worker, per shard: a fresh instance, ``add(row, audio)`` per example in index
  order, then ``commit_shard(split, number)``, which must publish the shard's output whole
  or not at all. The worker writes the shard's manifest part only after that, so the part
  stays the commit record: a shard is complete when its part exists and the sink has it.

A killed build resumes like an audio build: committed shards are kept, the others
rendered again, and the sink's shards come out the same.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from rmod.errors import InputError

SINK_GROUP = "rmod.token_sinks"
"""The entry point group a token sink registers in (name -> ``module:Class``)."""


@runtime_checkable
class TokenSink(Protocol):
    """What a token sink does (see the module docstring for which process calls what).

    Constructed as ``Sink(out, options, build)``: ``out`` its output folder, ``options``
    the sink's own settings (e.g. ``codec_weights``, ``device``), ``build`` what it needs
    to know of the build (:func:`build_facts`). Errors it raises for bad options or a
    refused output should be ``ValueError`` / ``OSError``: the build reports them in one
    line.
    """

    def open(self) -> None:
        """Create the output or check that it holds this build's earlier output."""

    def has_shard(self, split: str, number: int, size: int) -> bool:
        """True when shard ``number`` of ``split`` (``size`` examples) was committed whole."""

    def add(self, row: dict[str, Any], audio: dict[str, np.ndarray]) -> None:
        """Take one example: its manifest row (plain dict) and its rendered audio, role
        (``mixture``, ``kick``, ``snare``, ``hihat``) -> float32 ``[channels, samples]`` at
        the row's ``sample_rate``, as the files would hold it before 16-bit quantization."""

    def commit_shard(self, split: str, number: int) -> None:
        """Publish the examples added since this instance was made as one shard."""

    def close(self, manifests: dict[str, str]) -> None:
        """Finish the output once every shard is committed; ``manifests``: split -> path of
        the final manifest."""


@dataclass(frozen=True)
class SinkSpec:
    """Which sink a build feeds and how (small and picklable: it goes with every task).

    ``name``: the entry point's name in :data:`SINK_GROUP`; ``out``: the sink's output
    folder; ``options``: its settings; ``build``: :func:`build_facts`, filled in when the
    build is planned."""

    name: str
    out: str
    options: dict[str, Any] = field(default_factory=dict)
    build: dict[str, Any] = field(default_factory=dict)


def build_facts(info: Any, recipe: Any) -> dict[str, Any]:
    """What a sink is told about the build: ``sample_rate`` (Hz), ``mixture_samples`` and
    ``target_samples`` (the recipe's lengths), ``shard_size``, ``counts`` per split and
    ``identity`` (the ``build.json`` fields that decide every byte: a sink's output of
    another build must not be resumed into)."""
    return {
        "sample_rate": int(info.sample_rate),
        "mixture_samples": int(recipe.mixture_samples),
        "target_samples": int(recipe.target_samples),
        "shard_size": int(info.shard_size),
        "counts": dict(info.counts),
        "identity": {
            "recipe_fingerprint": info.recipe_fingerprint,
            "library_fingerprint": info.library_fingerprint,
            "engine_fingerprint": info.engine_fingerprint,
            "seed": int(info.seed),
            "counts": dict(info.counts),
            "shard_size": int(info.shard_size),
        },
    }


def installed_sinks() -> dict[str, importlib.metadata.EntryPoint]:
    """The token sinks installed: name -> entry point (group :data:`SINK_GROUP`)."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=SINK_GROUP)}


def make_sink(spec: SinkSpec) -> TokenSink:
    """A new instance of the sink ``spec`` names. Raises :class:`rmod.errors.InputError`
    naming the sinks installed when there is none of that name, or when the sink refuses
    its options."""
    found = installed_sinks()
    if spec.name not in found:
        have = ", ".join(sorted(found)) or "none"
        raise InputError(
            f"no token sink {spec.name!r} is installed (entry point group {SINK_GROUP}; "
            f"installed: {have}); install the package that provides it, e.g. "
            "'pip install -e .' for dose_model's 'dac'"
        )
    cls = found[spec.name].load()
    try:
        sink = cls(spec.out, dict(spec.options), dict(spec.build))
    except (ValueError, OSError) as exc:
        raise InputError(f"token sink {spec.name}: {exc}") from None
    if not isinstance(sink, TokenSink):
        raise InputError(f"token sink {spec.name} ({found[spec.name].value}) lacks a method")
    return sink
