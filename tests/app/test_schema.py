"""app/schema.py's config models agree with engine/config.py on every field, range and name."""

from __future__ import annotations

import math
import typing
from typing import Any

import pytest
from pydantic import ValidationError

from app.schema import ConfigModel, ConfigPatch
from engine.config import FIELDS, MODULE_VERSIONS, POLICIES, Config, check_field

PROBES: dict[str, list[Any]] = {
    "scenario": ["zero-step", "x", "", 5, True, ["a"]],
    "policy": [*POLICIES, "", "Bounded", "fastest", 1, True],
    "retry_max": [-1, 0, 1, 16, 1024, 1025, 5.0, "5", True, False, 2**70],
    "zero_step": [True, False, 0, 1, "true", "on", 1.0],
    "vcpus": [0, 1, 8, 512, 513, -5, 8.0, "8", True],
    "module_version": [*MODULE_VERSIONS, "2.0", "1", 1.5, 1],
    "seed": [-1, 0, 1, 2**63, 2**80, 1.0, "1", True],
    "speed": [0, -1, 1e-9, 1, 1000, 1000.5, 1e9, 1e9 + 1, 1e12, math.inf, -math.inf, math.nan,
              True, "5", [1]],
}


def test_fields_and_their_order_are_the_engines() -> None:
    assert tuple(ConfigModel.model_fields) == FIELDS
    assert tuple(ConfigPatch.model_fields) == FIELDS
    assert set(PROBES) == set(FIELDS)


def test_names_the_engine_accepts_are_the_schemas_enums() -> None:
    """The policy and module-version enums are exactly the engine's names."""
    schema = ConfigModel.model_json_schema()["properties"]
    assert tuple(schema["policy"]["enum"]) == POLICIES
    assert tuple(schema["module_version"]["enum"]) == MODULE_VERSIONS
    hints = typing.get_type_hints(ConfigModel, include_extras=True)
    assert typing.get_args(typing.get_args(hints["policy"])[0]) == POLICIES


@pytest.mark.parametrize("field", FIELDS)
def test_model_accepts_exactly_what_the_engine_accepts(field: str) -> None:
    """For each probe value (bounds, one past them, wrong types), the request model and
    engine.config.check_field agree on whether it is acceptable."""
    for value in PROBES[field]:
        engine_ok = check_field(field, value) is None
        try:
            ConfigPatch.model_validate({field: value})
            model_ok = True
        except ValidationError:
            model_ok = False
        assert model_ok == engine_ok, (field, value, check_field(field, value))


def test_engine_defaults_are_a_valid_config() -> None:
    assert ConfigModel.model_validate(Config().to_dict()).model_dump() == Config().to_dict()
    assert ConfigModel.model_json_schema()["examples"] == [Config().to_dict()]


def test_unknown_fields_are_refused_by_both() -> None:
    assert check_field("turbo", 1) is not None
    with pytest.raises(ValidationError):
        ConfigPatch.model_validate({"turbo": 1})
