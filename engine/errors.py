"""The engine's error types: one base class, specific subclasses."""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


class ConfigError(EngineError):
    """A configuration value is invalid; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ConfigErrors(EngineError):
    """Several invalid configuration values at once."""

    def __init__(self, errors: list[ConfigError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


class ScenarioError(EngineError):
    """A scenario file is invalid; the message names file, key and what is accepted."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("\n".join(messages))
        self.messages = messages


class InvariantError(EngineError):
    """The simulation broke one of its own invariants: a bug, never ignored."""
