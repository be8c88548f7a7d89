"""dose_model's records through rmod_dose_common.records (checking): configs and the training state go to plain dicts and back unchanged
(through JSON, and through a weights_only checkpoint), and a bad value names its field."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

import pytest
import torch

from dose_model.codec.dac_network import DacConfig
from dose_model.model.checkpoints import CheckpointError, TrainState, read_state
from dose_model.model.config import ConfigError, ModelConfig, TrainConfig
from rmod_dose_common.records import check_plain, plain_problem, to_plain

MODEL = ModelConfig(num_layers=2, num_heads=2, d_model=16, dropout=0.0, positions="none")
TRAIN = TrainConfig(lr=1, target_frames=None, eval_max_batches=3, mask_padding=False)


def _state() -> TrainState:
    return TrainState(
        MODEL.to_dict(),
        TRAIN.to_dict(),
        data={"drum": "kick", "mixture_frames": 345},
        step=7,
        best_valid=2.5,
        best_step=5,
        bad_evals=1,
        window=[1.0, 2.0, 3.0, 0.5, 4.0],
        world_size=2,
    )


@pytest.mark.parametrize("record", [MODEL, TRAIN, ModelConfig(), TrainConfig()])
def test_configs_round_trip_through_json(record):
    plain = json.loads(json.dumps(record.to_dict()))
    assert type(record).from_dict(plain) == record
    assert list(plain) == list(to_plain(record))  # declaration order


def test_train_state_round_trips_through_json_and_a_checkpoint(tmp_path):
    state = _state()
    plain = json.loads(json.dumps(state.to_dict()))  # best_valid may be inf: JSON Infinity
    assert TrainState.from_dict(plain, "x.ckpt") == state
    fresh = TrainState(MODEL.to_dict(), TRAIN.to_dict())
    assert TrainState.from_dict(json.loads(json.dumps(fresh.to_dict())), "y") == fresh
    state.model = {"w": torch.arange(4.0)}
    state.save(tmp_path / "last.ckpt")
    back = read_state(tmp_path / "last.ckpt")
    assert torch.equal(back.model["w"], state.model["w"]) and back.window == state.window
    assert ModelConfig.from_dict(back.model_config) == MODEL


@pytest.mark.parametrize(
    "data,message",
    [
        ({"d_model": "big"}, "model.d_model must be int, got 'big'"),
        ({"published": 1}, "model.published must be bool, got 1"),
        ({"num_heads": True}, "model.num_heads must be int, got True"),
        ({"d_modle": 32}, "unknown field(s) model.d_modle"),
        ([1, 2], "model must be a mapping, got list"),
    ],
)
def test_model_config_errors_name_the_field(data, message):
    with pytest.raises(ConfigError) as err:
        ModelConfig.from_dict(data)
    assert str(err.value) == message


def test_train_config_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"^train.target_frames must be int \| None, got 2.5$"):
        TrainConfig.from_dict({"target_frames": 2.5})
    with pytest.raises(ConfigError, match=r"^train.lr must be float, got '1e-3'$"):
        TrainConfig.from_dict({"lr": "1e-3"})
    assert TrainConfig.from_dict({"lr": 2}).lr == 2  # an integer is a number
    for bad in (math.nan, math.inf, 10**400):
        with pytest.raises(ConfigError, match=r"train\.lr must be float"):
            TrainConfig.from_dict({"lr": bad})


def test_an_infinite_default_may_stay_infinite():
    """A run saved before its first validation holds best_valid = inf and resumes."""
    state = TrainState(MODEL.to_dict(), TRAIN.to_dict(), data={}, step=3)
    assert state.best_valid == math.inf
    assert TrainState.from_dict(state.to_dict(), "run/last.ckpt") == state


@pytest.mark.parametrize(
    "change,message",
    [
        ({"step": "7"}, "checkpoint.step must be int, got '7'"),
        ({"window": [1.0, 2.0]}, "checkpoint.window has 2 sums, not 5"),
        ({"window": [1.0, 2.0, 3.0, 4.0, "x"]}, "checkpoint.window must be list[float]"),
        ({"stopped": None}, "checkpoint.stopped must be bool, got None"),
        ({"optimizer": []}, "checkpoint.optimizer must be dict[str, Any], got []"),
        ({"step": -5}, "checkpoint.step is -5, below 0"),
        ({"world_size": 0}, "checkpoint.world_size is 0, below 1"),
        ({"best_step": 9}, "checkpoint.best_step 9 is after step 7"),
        ({"best_valid": math.nan}, "checkpoint.best_valid must be float, got nan"),
        ({"window": [1.0, math.inf, 0.0, 0.0, 1.0]}, "checkpoint.window must be list[float]"),
    ],
)
def test_train_state_errors_name_the_file_and_field(change, message):
    data = {**_state().to_dict(), **change}
    with pytest.raises(CheckpointError) as err:
        TrainState.from_dict(data, "run/last.ckpt")
    assert str(err.value).startswith(f"run/last.ckpt: {message}"), str(err.value)
    assert str(err.value).endswith("(not resumable)")


def test_train_state_needs_every_field_and_its_format_tag():
    data = _state().to_dict()
    del data["rng"]
    with pytest.raises(
        CheckpointError, match=r"^a.ckpt: checkpoint has no 'rng' \(not resumable\)"
    ):
        TrainState.from_dict(data, "a.ckpt")
    with pytest.raises(CheckpointError, match="not a dose-train checkpoint"):
        TrainState.from_dict({**_state().to_dict(), "format": "other"}, "a.ckpt")
    older = {**_state().to_dict(), "retired_key": 1}  # keys of older layouts are not state
    assert TrainState.from_dict(older, "a.ckpt") == _state()


@dataclass(frozen=True)
class _Shapes:
    sizes: tuple[int, ...] = ()
    pair: tuple[str, float] = ("a", 1.0)
    names: list[str] = field(default_factory=list)


@pytest.mark.parametrize(
    "data,problem",
    [
        ({"sizes": (1, 2, 3), "pair": ("b", 2), "names": ["x"]}, None),
        ({"sizes": [1, 2]}, "t.sizes must be tuple[int, ...], got [1, 2]"),
        ({"sizes": (1, 2.5)}, "t.sizes must be tuple[int, ...], got (1, 2.5)"),
        ({"pair": ("b",)}, "t.pair must be tuple[str, float], got ('b',)"),
        ({"names": ["x", 1]}, "t.names must be list[str], got ['x', 1]"),
    ],
)
def test_type_problems_cover_tuples_and_lists(data, problem):
    assert plain_problem(_Shapes, data, "t") == problem


def test_from_plain_uses_the_callers_error_class_and_requires_fields_without_defaults():
    assert plain_problem(TrainState, {"model_config": {}}, "s") == "s has no 'train_config'"
    with pytest.raises(KeyError, match="s has no 'train_config'"):
        check_plain(TrainState, {"model_config": {}}, "s", KeyError)


def test_dac_kwargs_go_through_the_converter():
    """Released DAC kwargs (rates as lists) round-trip; a bad key or value is named."""
    released = {**DacConfig().to_kwargs(), "encoder_rates": [2, 4, 8, 8], "latent_dim": None}
    config = DacConfig.from_kwargs(released)
    assert config.encoder_rates == (2, 4, 8, 8)
    assert DacConfig.from_kwargs(config.to_kwargs()) == config
    for bad, named in [
        ({"hop": 512}, "DAC kwargs.hop"),
        ({"n_codebooks": "9"}, "DAC kwargs.n_codebooks must be int"),
        ({"decoder_rates": [8, 8.5]}, "DAC kwargs.decoder_rates"),
        ({"codebook_dim": [8, 8]}, "per-codebook"),
    ]:
        with pytest.raises(ValueError, match=re.escape(named)):
            DacConfig.from_kwargs(bad)
