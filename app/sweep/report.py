"""report.html: the figures, the answer tables and the assumptions, readable offline."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jinja2
from plotly.offline import get_plotlyjs

from app.sweep.answer import NONE, Answers, is_assumption, scenario_values
from app.sweep.figures import axis_figure, retry_figure
from app.sweep.stats import SUMMARY_COLUMNS
from app.sweep.store import REPORT, write_atomic

log = logging.getLogger(__name__)
CHROMIUM = "/usr/bin/chromium"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def figures(result: dict[str, Any], answers: Answers | None) -> list[dict[str, Any]]:
    """Every figure as (id, title, plotly figure)."""
    sweep = result["sweep"]
    axes: dict[str, list[Any]] = sweep["axes"]
    summary = result["summary"]
    out: list[dict[str, Any]] = []
    if answers is not None:
        out.append({"id": "fig-retry", "fig": retry_figure(answers, None),
                    "title": "Give-up rate against retry max, one line per "
                             + (", ".join(answers.design) or "point")})
        for axis in answers.assumptions:
            out.append({"id": f"fig-retry-{axis.replace('.', '-')}",
                        "fig": retry_figure(answers, axis),
                        "title": f"The same, for each value of {axis}"})
    base = answers.base if answers is not None else {a: v[0] for a, v in axes.items()}
    design = [a for a in axes if a != "retry_max" and not is_assumption(a)]
    for axis in axes:
        if axis == "retry_max" and answers is not None:
            continue
        out.append({"id": f"fig-axis-{axis.replace('.', '-')}",
                    "fig": axis_figure(axis, axes, summary, base, design),
                    "title": f"Give-up rate against {axis}"})
    return out


def write_report(out: Path, result: dict[str, Any], png: bool = True) -> Path:
    """Write report.html (plotly.js inlined: no network) and, when a browser is at hand,
    a PNG of every figure next to it."""
    sweep = result["sweep"]
    values = scenario_values(result)
    answers = (Answers(sweep["axes"], result["summary"], values)
               if "retry_max" in sweep["axes"] and result["summary"] else None)
    figs = figures(result, answers)
    for fig in figs:
        fig["html"] = fig["fig"].to_html(full_html=False, include_plotlyjs=False,
                                         div_id=fig["id"] + "-plot",
                                         config={"displaylogo": False})
    env = jinja2.Environment(loader=jinja2.PackageLoader("app.sweep", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    held = ", ".join(f"{a} = {answers.base[a]}" for a in answers.assumptions) if answers else ""
    html = env.get_template("report.html.j2").render(
        sweep=sweep, versions=result["versions"], state=result["state"],
        rows=len(result["rows"]), swept=[a for a in sweep["axes"] if is_assumption(a)],
        assumed=sorted(values.items()), main=answers.main() if answers else [],
        moves=answers.moves() if answers else {}, design=answers.design if answers else [],
        held=held, none_text=NONE, base_retry=answers.base["retry_max"] if answers else None,
        rates={a: answers.rates(a) for a in answers.assumptions} if answers else {}, figures=figs, summary=result["summary"],
        columns=[*sweep["axes"], *SUMMARY_COLUMNS, "seed_rate_min", "seed_rate_max"], fmt=_fmt,
        failures=result["failures"], plotly_js=get_plotlyjs())
    path = out / REPORT
    write_atomic(path, html)
    if png:
        render_pngs(path, [f["id"] for f in figs])
    return path


def render_pngs(report: Path, ids: list[str]) -> list[Path]:
    """report-<figure>.png beside the report, drawn by headless Chromium; nothing (and no
    complaint) when Playwright or a Chromium is not installed."""
    if not ids or not Path(CHROMIUM).exists():
        return []
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        return []
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]
    written = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            page.goto(report.resolve().as_uri())
            for fig_id in ids:
                target = report.with_name(f"report-{fig_id.removeprefix('fig-')}.png")
                page.locator(f"#{fig_id}-plot").screenshot(path=str(target))
                written.append(target)
            browser.close()
    except Error as exc:  # a browser that will not start is not the sweep's failure
        log.warning("report PNGs skipped: %s", exc)
    return written
