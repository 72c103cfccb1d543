"""report.html: offline, the assumptions stated, the answer tables, figures and PNGs."""

from __future__ import annotations

import re
from pathlib import Path

from tests.app.sweep_helpers import SMALL, cli, write

GRID = SMALL.replace('retry_max = [0, 4]', 'retry_max = [0, 4, 16]\n"timing.vp_entry_ns" = [1000, 2000]')


def test_report_opens_offline_and_says_what_is_assumed(tmp_path: Path) -> None:
    """No URL the page would fetch; plotly.js inlined; the assumption statement, the answer
    table per TD size and policy, how it moves with the timing axis; a figure per axis;
    PNGs of the figures beside it (Chromium is installed by the test set-up)."""
    out = tmp_path / "out"
    done = cli("sweep", str(write(tmp_path / "s.toml", GRID)), "--out", str(out))
    assert done.returncode == 0, done.stderr
    html = (out / "report.html").read_text()
    page = re.sub(r"<script>.*?</script>", "", html, flags=re.S)  # the bundle's own strings
    assert not re.search(r"""(src|href)=["']?https?://""", page)
    assert "<script src" not in page
    assert "Plotly.newPlot" in html and len(html) > 3_000_000  # the bundle itself
    assert "not measurements" in html and "MODEL.md section 6" in html
    assert "<code>timing.vp_entry_ns</code>" in html
    assert 'aria-label="Answer table"' in html
    assert "How the answer moves with <code>timing.vp_entry_ns</code>" in html
    for fig in ("fig-retry", "fig-retry-timing-vp_entry_ns", "fig-axis-vcpus",
                "fig-axis-policy", "fig-axis-timing-vp_entry_ns"):
        assert f'id="{fig}"' in html
    pngs = sorted(p.name for p in out.glob("report-*.png"))
    assert pngs == ["report-axis-policy.png", "report-axis-timing-vp_entry_ns.png",
                    "report-axis-vcpus.png", "report-retry-timing-vp_entry_ns.png",
                    "report-retry.png"]
    assert all((out / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    # the terminal gets the answer table too
    assert "smallest retry_max with give-up upper bound < 1e-3" in done.stdout
    assert "(assumptions at timing.vp_entry_ns = 2000)" in done.stdout


def test_a_sweep_without_retry_max_plots_every_axis(tmp_path: Path) -> None:
    text = SMALL.replace("retry_max = [0, 4]\n", "")
    out = tmp_path / "out"
    assert cli("sweep", str(write(tmp_path / "s.toml", text)), "--out", str(out),
               "--no-png").returncode == 0
    html = (out / "report.html").read_text()
    assert 'id="fig-axis-vcpus"' in html and 'id="fig-axis-policy"' in html
    assert 'aria-label="Answer table"' not in html
    assert not list(out.glob("*.png"))
