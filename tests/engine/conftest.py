"""Engine-test configuration: keep third-party deprecations out of failure reports."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # When a hypothesis test fails, its pytest plugin touches mypy_extensions.TypedDict
    # while building the report; with warnings as errors that DeprecationWarning turned a
    # readable failure into an INTERNALERROR. It is not ours to fix, so it is ignored.
    config.addinivalue_line(
        "filterwarnings", "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")
