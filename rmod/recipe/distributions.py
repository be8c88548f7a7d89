"""Distribution specs used by recipes: parse, validate, sample, serialize.

A recipe field that varies per example holds one of these YAML forms::

    3.5                                  # a constant (any number or true/false)
    {uniform: [lo, hi]}                  # float, lo <= x <= hi
    {loguniform: [lo, hi]}               # float, log-uniform, 0 < lo (frequencies, times)
    {randint: [lo, hi]}                  # int, both ends included
    {choice: [a, b, ...]}                # one of the options, equally likely
    {choice: [a, b], p: [0.9, 0.1]}      # ... with explicit probabilities
    {normal: [mu, sigma], clip: [lo, hi]}  # float, Gaussian, clipped (clip optional)
    {bernoulli: p}                       # bool, True with probability p

Every distribution draws only from the ``numpy.random.Generator`` passed to
:meth:`Distribution.sample`, returns plain Python values (``float``, ``int``,
``bool``, or a ``tuple`` for list-valued choices) so that drawn parameters
serialize to JSON unchanged, and knows its numeric ``bounds`` (used by the
recipe's range checks and by statistics plots).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, cast

import numpy as np

from rmod.errors import RmodError

NAMES = ("uniform", "loguniform", "randint", "choice", "normal", "bernoulli")


class DistributionError(RmodError, ValueError):
    """An invalid distribution spec; ``where`` is the field path, ``reason`` the problem."""

    def __init__(self, where: str, reason: str):
        self.where = where
        self.reason = reason
        super().__init__(f"{where}: {reason}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    """A number (not a bool) that is finite as a float: an integer beyond a float's range
    (YAML reads one of 400 digits) is not."""
    if not _is_number(value):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _freeze(value: Any) -> Any:
    """Lists become tuples (recursively) so drawn values are hashable and immutable."""
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    """Tuples become lists (recursively), for YAML/JSON output."""
    if isinstance(value, (list, tuple)):
        return [_thaw(v) for v in value]
    return value


class Distribution(ABC):
    """A random quantity of a recipe. Subclasses are immutable after construction."""

    #: ``"float"``, ``"int"``, ``"bool"`` or ``"any"``: the type :meth:`sample` returns.
    kind: str = "float"

    @abstractmethod
    def sample(self, rng: np.random.Generator) -> Any:
        """Draw one value using only ``rng``."""

    @abstractmethod
    def to_dict(self) -> Any:
        """The YAML/JSON spec that :func:`parse_distribution` turns back into ``self``."""

    @property
    @abstractmethod
    def bounds(self) -> tuple[float, float] | None:
        """Smallest and largest value the draw can take (``None`` if not numeric)."""

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(repr(self.to_dict()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_dict()!r})"


class Constant(Distribution):
    """Always the same value (a number, a bool, or a list-valued constant)."""

    def __init__(self, value: Any):
        self.value = _freeze(value)
        if isinstance(value, bool):
            self.kind = "bool"
        elif isinstance(value, int):
            self.kind = "int"
        elif isinstance(value, float):
            self.kind = "float"
        else:
            self.kind = "any"

    def sample(self, rng: np.random.Generator) -> Any:
        return self.value

    def to_dict(self) -> Any:
        return _thaw(self.value)

    @property
    def bounds(self) -> tuple[float, float] | None:
        if _is_number(self.value):
            return (float(self.value), float(self.value))
        if isinstance(self.value, bool):
            return (float(self.value), float(self.value))
        return None


class Uniform(Distribution):
    """Float drawn uniformly in ``[lo, hi]``."""

    name = "uniform"

    def __init__(self, lo: float, hi: float):
        self.lo, self.hi = float(lo), float(hi)

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.lo, self.hi))

    def to_dict(self) -> Any:
        return {self.name: [self.lo, self.hi]}

    @property
    def bounds(self) -> tuple[float, float]:
        return (self.lo, self.hi)


class LogUniform(Uniform):
    """Float whose logarithm is uniform in ``[log lo, log hi]`` (``0 < lo``)."""

    name = "loguniform"

    def sample(self, rng: np.random.Generator) -> float:
        value = math.exp(rng.uniform(math.log(self.lo), math.log(self.hi)))
        return float(min(max(value, self.lo), self.hi))


class RandInt(Distribution):
    """Integer drawn uniformly from ``lo..hi``, both ends included."""

    kind = "int"

    def __init__(self, lo: int, hi: int):
        self.lo, self.hi = int(lo), int(hi)

    def sample(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.lo, self.hi + 1))

    def to_dict(self) -> Any:
        return {"randint": [self.lo, self.hi]}

    @property
    def bounds(self) -> tuple[float, float]:
        return (float(self.lo), float(self.hi))


class Choice(Distribution):
    """One of ``options`` (equally likely unless ``p`` is given)."""

    def __init__(self, options: list[Any], p: list[float] | None = None):
        self.options = tuple(_freeze(o) for o in options)
        self.p = None if p is None else tuple(float(x) for x in p)
        if all(isinstance(o, bool) for o in self.options):
            self.kind = "bool"
        elif all(isinstance(o, int) and not isinstance(o, bool) for o in self.options):
            self.kind = "int"
        elif all(_is_number(o) for o in self.options):
            self.kind = "float"
        else:
            self.kind = "any"
        self._cdf = None if self.p is None else np.cumsum(self.p)

    def sample(self, rng: np.random.Generator) -> Any:
        if self._cdf is None:
            return self.options[int(rng.integers(len(self.options)))]
        u = rng.random() * self._cdf[-1]
        index = int(np.searchsorted(self._cdf, u, side="right"))
        return self.options[min(index, len(self.options) - 1)]

    def to_dict(self) -> Any:
        spec: dict[str, Any] = {"choice": _thaw(self.options)}
        if self.p is not None:
            spec["p"] = list(self.p)
        return spec

    @property
    def bounds(self) -> tuple[float, float] | None:
        if self.kind in ("int", "float", "bool"):
            return (float(min(self.options)), float(max(self.options)))
        return None


class Normal(Distribution):
    """Gaussian float ``N(mu, sigma)``, clipped to ``clip`` when given."""

    def __init__(self, mu: float, sigma: float, clip: tuple[float, float] | None = None):
        self.mu, self.sigma = float(mu), float(sigma)
        self.clip = None if clip is None else (float(clip[0]), float(clip[1]))

    def sample(self, rng: np.random.Generator) -> float:
        value = float(rng.normal(self.mu, self.sigma))
        if self.clip is not None:
            value = min(max(value, self.clip[0]), self.clip[1])
        return value

    def to_dict(self) -> Any:
        spec: dict[str, Any] = {"normal": [self.mu, self.sigma]}
        if self.clip is not None:
            spec["clip"] = list(self.clip)
        return spec

    @property
    def bounds(self) -> tuple[float, float]:
        if self.clip is not None:
            return self.clip
        if self.sigma == 0:
            return (self.mu, self.mu)
        return (-math.inf, math.inf)


class Bernoulli(Distribution):
    """``True`` with probability ``p``."""

    kind = "bool"

    def __init__(self, p: float):
        self.p = float(p)

    def sample(self, rng: np.random.Generator) -> bool:
        return bool(rng.random() < self.p)

    def to_dict(self) -> Any:
        return {"bernoulli": self.p}

    @property
    def bounds(self) -> tuple[float, float]:
        return (0.0, 1.0)


def _pair(value: Any, where: str, what: str, integer: bool = False) -> tuple[float, float]:
    """Check ``value`` is ``[lo, hi]`` of numbers with ``lo <= hi``."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise DistributionError(where, f"{what} needs a list [low, high], got {value!r}")
    lo, hi = value
    for v in (lo, hi):
        if integer and not (isinstance(v, int) and not isinstance(v, bool)):
            raise DistributionError(where, f"{what} needs integers, got {v!r}")
        if not _finite(v):
            raise DistributionError(where, f"{what} needs finite numbers, got {v!r}")
    if lo > hi:
        raise DistributionError(where, f"low {lo} > high {hi}")
    return lo, hi


def parse_distribution(spec: Any, where: str) -> Distribution:
    """Turn a YAML/JSON spec (see the module docstring) into a :class:`Distribution`.

    ``where`` is the field path used in error messages (e.g. ``mixing.eq.low_shelf.gain_db``).
    Raises :class:`DistributionError` for an unknown name, a wrong type, ``lo > hi``,
    a probability outside [0, 1], an empty choice or a non-positive log-uniform bound.
    """
    if isinstance(spec, bool) or _is_number(spec):
        if _is_number(spec) and not _finite(spec):
            raise DistributionError(where, f"constant must be finite, got {spec!r}")
        return Constant(spec)
    if not isinstance(spec, dict):
        raise DistributionError(
            where,
            f"expected a number or a distribution like {{uniform: [lo, hi]}}, got {spec!r}",
        )
    name = _spec_name(spec, where)
    return _PARSERS[name](spec[name], spec, where)


def _spec_name(spec: dict, where: str) -> str:
    """The one distribution name among ``spec``'s keys; its options fit that name."""
    names = [k for k in spec if k in NAMES]
    unknown = [k for k in spec if k not in NAMES and k not in ("clip", "p")]
    if unknown:
        raise DistributionError(
            where, f"unknown distribution {unknown[0]!r} (expected one of: {', '.join(NAMES)})"
        )
    if len(names) != 1:
        raise DistributionError(
            where, f"needs exactly one of {', '.join(NAMES)}, got {sorted(spec)!r}"
        )
    name = names[0]
    if "clip" in spec and name != "normal":
        raise DistributionError(where, "'clip' is only allowed with 'normal'")
    if "p" in spec and name != "choice":
        raise DistributionError(where, "'p' is only allowed with 'choice'")
    return name


def _uniform(arg: Any, spec: dict, where: str) -> Distribution:
    return Uniform(*_pair(arg, where, "uniform"))


def _loguniform(arg: Any, spec: dict, where: str) -> Distribution:
    lo, hi = _pair(arg, where, "loguniform")
    if lo <= 0:
        raise DistributionError(where, f"loguniform needs 0 < low, got {lo}")
    return LogUniform(lo, hi)


def _randint(arg: Any, spec: dict, where: str) -> Distribution:
    # integer=True: _pair has checked that both ends are ints
    return RandInt(*cast("tuple[int, int]", _pair(arg, where, "randint", integer=True)))


def _normal(arg: Any, spec: dict, where: str) -> Distribution:
    mu, sigma = _pair_any(arg, where)
    if sigma < 0:
        raise DistributionError(where, f"normal needs sigma >= 0, got {sigma}")
    clip = _pair(spec["clip"], where + ".clip", "clip") if "clip" in spec else None
    return Normal(mu, sigma, clip)


def _bernoulli(arg: Any, spec: dict, where: str) -> Distribution:
    if not _is_number(arg):
        raise DistributionError(where, f"bernoulli needs a probability, got {arg!r}")
    if not 0.0 <= arg <= 1.0:
        raise DistributionError(where, f"probability {arg} outside [0, 1]")
    return Bernoulli(arg)


def _choice(arg: Any, spec: dict, where: str) -> Distribution:
    if not isinstance(arg, list):
        raise DistributionError(where, f"choice needs a list of options, got {arg!r}")
    if not arg:
        raise DistributionError(where, "choice has no options")
    p = spec.get("p")
    if p is not None:
        if not isinstance(p, list) or len(p) != len(arg) or not all(_is_number(x) for x in p):
            raise DistributionError(where, f"p needs {len(arg)} numbers, got {p!r}")
        if any(x < 0 or x > 1 for x in p):
            raise DistributionError(where, f"probability outside [0, 1] in p={p!r}")
        if abs(sum(p) - 1.0) > 1e-6:
            raise DistributionError(where, f"p must sum to 1, got {sum(p)}")
    return Choice(arg, p)


#: Distribution name -> its parser, called with the name's value, the whole spec and the
#: field path.
_PARSERS = {
    "uniform": _uniform,
    "loguniform": _loguniform,
    "randint": _randint,
    "normal": _normal,
    "bernoulli": _bernoulli,
    "choice": _choice,
}


def _pair_any(value: Any, where: str) -> tuple[float, float]:
    """``[a, b]`` of finite numbers without ordering (normal's mu, sigma)."""
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(_finite(v) for v in value)
    ):
        raise DistributionError(where, f"normal needs [mu, sigma], got {value!r}")
    return float(value[0]), float(value[1])
