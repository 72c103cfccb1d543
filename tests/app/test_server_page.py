"""The page's files: index, static directory, plotly's bundle, favicon."""

from __future__ import annotations

from pathlib import Path

from conftest import make_client

from app.server import static_dir
from app.settings import Settings


def test_page_and_static_files(tmp_path: Path) -> None:
    pages = tmp_path / "static"
    (pages / "js").mkdir(parents=True)
    (pages / "index.html").write_text("<!doctype html><title>t</title>")
    (pages / "js" / "socket.js").write_text("export const x = 1;")
    settings = Settings(data_dir=tmp_path / "data", static_dir=pages)
    with make_client(settings) as client:
        index = client.get("/")
        assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
        assert "<title>t</title>" in index.text
        script = client.get("/static/js/socket.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        assert client.get("/static/nope.js").status_code == 404
        assert client.get("/favicon.ico").status_code in (200, 204)


def test_missing_page_is_404(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", static_dir=tmp_path / "empty")
    with make_client(settings) as client:
        assert client.get("/").status_code == 404


def test_plotly_is_served_from_the_installed_package(client) -> None:  # type: ignore[no-untyped-def]
    reply = client.get("/vendor/plotly.min.js")
    assert reply.status_code == 200
    assert "javascript" in reply.headers["content-type"]
    assert len(reply.content) > 1_000_000


def test_static_dir_is_the_shipped_static_directory() -> None:
    assert static_dir().name == "static" or (static_dir() / "__init__.py").exists()
