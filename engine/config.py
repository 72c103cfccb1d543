"""The run configuration: the contract's fields, their ranges, and their validation."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from engine.errors import ConfigError, ConfigErrors

POLICIES = ("none", "bounded", "vmm_lock", "upstream", "backoff", "upstream_6_17")
MODULE_VERSIONS = ("1.0", "1.5")
RETRY_MAX_RANGE = (0, 1024)
VCPUS_RANGE = (1, 512)
# Fields a running simulation takes at once; any other change starts a new run.
LIVE_FIELDS = ("policy", "retry_max", "zero_step", "speed")
DEFAULT_SPEED = 1000.0  # simulated us per wall-clock second: 1 ms of TD time a second
SPEED_MAX = 1e9  # 1000 s of TD time a second: far beyond the engine, short of overflow


@dataclass(frozen=True, slots=True)
class Config:
    """One run's configuration (CONTRACT.md "Config")."""

    scenario: str = "zero-step"
    policy: str = "bounded"
    retry_max: int = 16
    zero_step: bool = True
    vcpus: int = 8
    module_version: str = "1.5"
    seed: int = 1
    speed: float = DEFAULT_SPEED

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_changes(self, changes: dict[str, Any]) -> Config:
        """A validated copy with `changes` applied; raises ConfigErrors naming each bad field."""
        errors = [e for name, value in changes.items() if (e := check_field(name, value))]
        if errors:
            raise ConfigErrors(errors)
        values: dict[str, Any] = {k: (float(v) if k == "speed" else v) for k, v in changes.items()}
        return replace(self, **values)


FIELDS = tuple(Config.__dataclass_fields__)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_field(name: str, value: Any, scenarios: tuple[str, ...] | None = None) -> ConfigError | None:
    """The error for one field's value, or None when it is acceptable."""
    if name not in FIELDS:
        return ConfigError(name, f"unknown field; known: {', '.join(FIELDS)}")
    if name == "scenario":
        if not isinstance(value, str) or not value:
            return ConfigError(name, "must be a scenario name")
        if scenarios is not None and value not in scenarios:
            return ConfigError(name, f"unknown scenario {value!r}; known: {', '.join(scenarios)}")
    elif name == "policy":
        if value not in POLICIES:
            return ConfigError(name, f"unknown policy {value!r}; known: {', '.join(POLICIES)}")
    elif name == "retry_max":
        lo, hi = RETRY_MAX_RANGE
        if not _is_int(value) or not lo <= value <= hi:
            return ConfigError(name, f"must be an integer from {lo} to {hi}")
    elif name == "zero_step":
        if not isinstance(value, bool):
            return ConfigError(name, "must be true or false")
    elif name == "vcpus":
        lo, hi = VCPUS_RANGE
        if not _is_int(value) or not lo <= value <= hi:
            return ConfigError(name, f"must be an integer from {lo} to {hi}")
    elif name == "module_version":
        if value not in MODULE_VERSIONS:
            return ConfigError(name, f"must be one of {', '.join(MODULE_VERSIONS)}")
    elif name == "seed":
        if not _is_int(value) or value < 0:
            return ConfigError(name, "must be an integer >= 0")
    elif name == "speed":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= SPEED_MAX:
            return ConfigError(name, "must be a number > 0 and at most 1e9")
        if value != value or value == float("inf"):
            return ConfigError(name, "must be a finite number > 0")
    return None


def validate(config: Config, scenarios: tuple[str, ...] | None = None) -> Config:
    """Check every field of a whole config; raises ConfigErrors naming each bad one."""
    errors = [e for name in FIELDS if (e := check_field(name, getattr(config, name), scenarios))]
    if errors:
        raise ConfigErrors(errors)
    return config
