"""Server settings: where to bind, where runs are kept, the token, the frame rate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """Everything `create_app` needs; built by `serve` from the command line."""

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("data")
    token: str | None = None
    frame_interval_ms: int = 100
    persist_interval_s: float = 1.0
    queue_size: int = 32
    static_dir: Path | None = None  # None: the installed app.static package
    dask_scheduler: str | None = None  # sweeps run on this Dask cluster (else locally)

    @property
    def token_required(self) -> bool:
        return self.token is not None
