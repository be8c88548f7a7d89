"""What the build sends a worker and what comes back: the shard task, its result, its errors."""

from __future__ import annotations

from dataclasses import dataclass

from rmod.build.shards import Shard
from rmod.build.sink import SinkSpec
from rmod.errors import RmodError
from rmod.recipe.spec import Recipe


class ExampleFailed(RmodError):
    """An example that could not be built; names the example and, when known, the file."""

    def __init__(self, example_id: str, reason: str, path: str | None = None):
        self.example_id = example_id
        self.reason = reason
        self.path = path
        where = f" ({path})" if path else ""
        super().__init__(f"example {example_id}{where}: {reason}")

    def __reduce__(self) -> tuple[type[ExampleFailed], tuple[str, str, str | None]]:
        # keep the fields when the error crosses a process boundary
        return (type(self), (self.example_id, self.reason, self.path))


class ShardError(RmodError):
    """A shard that could not be built for a reason outside its examples (the library
    cannot be loaded on this worker, the output folder cannot be written)."""

    def __init__(self, shard: str, reason: str):
        self.shard = shard
        self.reason = reason
        super().__init__(f"shard {shard}: {reason}")

    def __reduce__(self) -> tuple[type[ShardError], tuple[str, str]]:
        return (type(self), (self.shard, self.reason))


@dataclass(frozen=True)
class ShardTask:
    """Everything a worker needs to build one shard (small and picklable); ``sink``: the
    token sink that takes the examples instead of files (``--tokens``), or None."""

    root: str
    shard: Shard
    recipe: Recipe
    library_path: str | None
    library_fingerprint: str
    seed: int
    audio_format: str
    engine_fingerprint: str
    lease: str | None = None
    sink: SinkSpec | None = None


@dataclass(frozen=True)
class ShardResult:
    """What a worker reports back about a committed shard."""

    shard: Shard
    seconds: float
    peak_rss_bytes: int
    worker: str
