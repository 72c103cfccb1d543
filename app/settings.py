"""Server settings: where to bind, the names it answers to, where runs are kept, the token,
the frame rate, the runner's time limits."""

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
    allow_hosts: tuple[str, ...] = ()  # Host names served besides the bind address
    frame_interval_ms: int = 100
    persist_interval_s: float = 0.0  # 0: the run's progress is stored with every frame
    call_timeout_s: float = 10.0  # a route waits this long for the runner, then 503
    restart_delay_s: float = 0.5  # a failed runner loop starts again after this
    queue_size: int = 32
    # Exports replay their run on a thread each: more at once are refused (503), so a page
    # or script opening many cannot starve the live run and the routes of CPU.
    max_exports: int = 4
    static_dir: Path | None = None  # None: the installed app.static package
    dask_scheduler: str | None = None  # sweeps run on this Dask cluster (else locally)

    @property
    def token_required(self) -> bool:
        return self.token is not None
