"""What every embedding model of the FAD tools offers, and the one place that loads them.

An embedder turns audio into rows of embeddings: ``embed(audio [channels, samples] float32,
sample_rate) -> float32 [windows, dim]``, one row per analysis window of the model (VGGish:
0.96 s examples; CLAP: one 10 s clip). It resamples and pads by itself, following the rule in
``info.pad_rule``, so clips of any rate and length (one-shots included) give at least one row.

``info`` says what produced the numbers: the model's name, rate and width, the SHA-256 of its
weight file and every option that changes the output. The embedding cache keys on it and every
result records it, so two numbers are comparable exactly when their ``info`` agree.

:func:`load_embedder` reads a spec ``NAME=PATH`` (``vggish=vggish-10086976.pth``,
``clap=630k-audioset-best.pt``) and imports the model's module only then, so the FAD tools'
``--help`` and the Fréchet distance need no torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from dose_model.errors import DoseError


class FadError(DoseError, ValueError):
    """A problem of the FAD tools (a spec, a weight file, an audio file); the message names
    the file or option."""


@dataclass(frozen=True)
class EmbedderInfo:
    """What produced a set of embeddings.

    Attributes:
        name: the model (``"vggish"``, ``"clap"``).
        sample_rate: Hz the model works at (input at other rates is resampled).
        dim: width of one embedding row.
        weights_sha256: SHA-256 hex digest of the weight file's bytes.
        pad_rule: how a clip shorter than the model's window is filled, in words.
        options: every other setting that changes the output (plain JSON values).
    """

    name: str
    sample_rate: int
    dim: int
    weights_sha256: str
    pad_rule: str
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field."""
        return asdict(self)


@runtime_checkable
class Embedder(Protocol):
    """An embedding model for FAD (see the module docstring)."""

    @property
    def info(self) -> EmbedderInfo:
        """What produced the embeddings (a plain or frozen attribute of the embedder)."""
        ...

    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """float32 ``[channels, samples]`` at ``sample_rate`` Hz -> float32 ``[windows, dim]``
        (windows >= 1)."""
        ...


MODELS = ("vggish", "clap")


def parse_spec(spec: str) -> tuple[str, str]:
    """``"NAME=PATH"`` -> ``(name, path)``; FadError for an unknown name or no path."""
    name, sep, path = spec.partition("=")
    if not sep or not path:
        raise FadError(
            f"model {spec!r}: expected NAME=WEIGHTS with NAME one of {', '.join(MODELS)}"
        )
    if name not in MODELS:
        raise FadError(f"model {spec!r}: unknown model {name!r} (known: {', '.join(MODELS)})")
    return name, path


def load_embedder(spec: str, **options: Any) -> Embedder:
    """The embedding model a spec names, loaded from its local weight file.

    Args:
        spec: ``"vggish=PATH"`` (torchvggish's release file) or ``"clap=PATH"`` (a LAION-CLAP
            checkpoint).
        **options: the model's options. vggish: ``output`` (``"pre_relu"`` default,
            ``"relu"``, ``"postprocessed"``), ``pca`` (path of the PCA file, needed for
            ``postprocessed``), ``float32_sums``; ``pad`` may only be ``"zero"`` (its one rule).
            clap: ``pad`` (``"repeat"`` default or ``"zero"``), ``int16`` (round trip first).
            An option given as None means the model's default.

    Raises:
        FadError: an unknown model or option, or a weight file the model cannot read.
        OSError: the weight file cannot be opened.
    """
    name, path = parse_spec(spec)
    given = {key: value for key, value in options.items() if value is not None}
    if name == "vggish":
        if given.pop("pad", "zero") != "zero":
            raise FadError("--pad: vggish has one rule, zero-padding to 1 s; 'repeat' is for clap")
        if given.pop("int16", False):
            raise FadError(
                "--int16: the int16 round trip is a CLAP convention (fadtk's); not for vggish"
            )
        _check_options(name, given, ("output", "pca", "float32_sums"))
        from dose_model.fad.vggish import load_vggish

        return load_vggish(path, **given)
    _check_options(name, given, ("pad", "int16"))
    try:
        from dose_model.fad.clap import load_clap
    except ModuleNotFoundError as exc:
        if exc.name != "dose_model.fad.clap":
            raise
        raise FadError("clap: this installation has no CLAP model (dose_model.fad.clap)") from None
    return load_clap(path, **given)


def _check_options(name: str, given: dict[str, Any], known: tuple[str, ...]) -> None:
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise FadError(
            f"{name}: unknown option(s) {', '.join(unknown)} (known: {', '.join(known)})"
        )
