"""Deterministic discrete-event simulator of TDX module lock contention."""

from __future__ import annotations

__version__ = "0.1.0"
