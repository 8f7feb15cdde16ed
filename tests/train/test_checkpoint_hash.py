"""The config hash that guards resuming: shapes count, training-only settings do not."""

from __future__ import annotations

from smx.config import Params
from smx.train.checkpoint import config_hash

SM = {"kind": "summarymixing", "local_hidden": [32], "local_out": 32, "summary_hidden": [32]}


def hash_of(mixer: dict) -> str:
    return config_hash(Params.model_validate({"model": {"mixer": mixer}}))


def test_activation_checkpointing_does_not_change_the_hash() -> None:
    assert hash_of(SM) == hash_of({**SM, "activation_checkpointing": True})


def test_a_shape_or_mixer_change_does() -> None:
    assert hash_of(SM) != hash_of({**SM, "local_out": 64})
    assert hash_of(SM) != hash_of({"kind": "mhsa"})
    assert hash_of({"kind": "mhsa"}) != hash_of({"kind": "none"})
