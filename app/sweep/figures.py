"""The report's plotly figures: give-up rate with its 95% interval against each axis."""

from __future__ import annotations

import math
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.sweep.answer import Answers
from app.sweep.stats import THRESHOLD, group

MAX_LINES = 24  # more lines than this make a legend nobody can read
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
           "#17becf", "#7f7f7f", "#bcbd22")


def _label(keys: list[str], values: tuple[Any, ...]) -> str:
    return ", ".join(f"{k.split('.')[-1]} {v}" for k, v in zip(keys, values, strict=True)) or "all"


def _traces(rows: list[dict[str, Any]], x_of: Any, name: str, colour: str,
            show_legend: bool) -> list[go.Scatter]:
    """The rate with its interval as error bars; a point with no give-up is drawn at its
    upper bound as a down-pointing triangle (a log axis cannot show 0)."""
    xs = [x_of(r) for r in rows]
    rate = [r["giveup_rate"] if r["giveup_rate"] > 0 else None for r in rows]
    plus = [r["giveup_rate_hi"] - r["giveup_rate"] if r["giveup_rate"] > 0 else 0 for r in rows]
    minus = [r["giveup_rate"] - r["giveup_rate_lo"] if r["giveup_rate"] > 0 else 0 for r in rows]
    zero = [r["giveup_rate_hi"] if r["giveup_rate"] == 0 else None for r in rows]
    hover = [f"{name}<br>rate {r['giveup_rate']:.3g} [{r['giveup_rate_lo']:.3g}, "
             f"{r['giveup_rate_hi']:.3g}]<br>{r['giveups']} of {r['calls']} calls" for r in rows]
    return [
        go.Scatter(x=xs, y=rate, mode="lines+markers", name=name, legendgroup=name,
                   showlegend=show_legend, line={"color": colour}, hovertext=hover,
                   hoverinfo="text", connectgaps=True,
                   error_y={"type": "data", "array": plus, "arrayminus": minus,
                            "visible": True, "thickness": 1}),
        go.Scatter(x=xs, y=zero, mode="markers", name=f"{name}: 0 give-ups (upper bound)",
                   legendgroup=name, showlegend=False, hovertext=hover, hoverinfo="text",
                   marker={"symbol": "triangle-down", "size": 9, "color": colour}),
    ]


def _threshold(fig: go.Figure, cols: int) -> None:
    for col in range(1, cols + 1):
        label = {"annotation_text": "1e-3"} if col == 1 else {}
        fig.add_hline(y=THRESHOLD, line={"dash": "dot", "color": "#555"}, row=1, col=col,
                      **label)


def retry_figure(answers: Answers, axis: str | None) -> go.Figure:
    """Give-up rate against retry max (log axes), one line per TD size and policy; one
    panel per value of `axis` (an assumption), the other assumptions held at baseline."""
    values = answers.axes[axis] if axis else [None]
    fig = make_subplots(rows=1, cols=len(values), shared_yaxes=True,
                        subplot_titles=[f"{axis} = {v}" for v in values] if axis else None)
    for col, value in enumerate(values, start=1):
        held = {a: answers.base[a] for a in answers.assumptions if a != axis}
        if axis:
            held[axis] = value
        rows = [r for r in answers.summary if all(r[k] == v for k, v in held.items())]
        for i, (key, line) in enumerate(list(group(rows, answers.design).items())[:MAX_LINES]):
            line = sorted(line, key=lambda r: r["retry_max"])
            fig.add_traces(_traces(line, lambda r: r["retry_max"] + 1,
                                   _label(answers.design, key), COLOURS[i % len(COLOURS)],
                                   col == 1), rows=1, cols=col)
    ticks = sorted(answers.axes["retry_max"])
    fig.update_xaxes(type="log", tickvals=[t + 1 for t in ticks], ticktext=[str(t) for t in ticks],
                     title_text="retry max (log scale; 0 at the left)")
    fig.update_yaxes(type="log", exponentformat="power")
    fig.update_yaxes(title_text="give-ups per logical call (95% Wilson)", col=1)
    _threshold(fig, len(values))
    fig.update_layout(height=460, margin={"t": 60, "l": 70, "r": 20, "b": 60},
                      legend={"orientation": "h", "y": -0.25}, template="plotly_white")
    return fig


def axis_figure(axis: str, axes: dict[str, list[Any]], summary: list[dict[str, Any]],
                base: dict[str, Any], lines_by: list[str]) -> go.Figure:
    """Give-up rate against one axis; `lines_by` axes make lines, the rest are held."""
    lines_by = [a for a in lines_by if a != axis]
    held = {a: base[a] for a in axes if a != axis and a not in lines_by}
    rows = [r for r in summary if all(r[k] == v for k, v in held.items())]
    fig = go.Figure()
    position = {repr(v): i for i, v in enumerate(axes[axis])}
    for i, (key, line) in enumerate(list(group(rows, lines_by).items())[:MAX_LINES]):
        line = sorted(line, key=lambda r: position[repr(r[axis])])
        fig.add_traces(_traces(line, lambda r: str(r[axis]), _label(lines_by, key),
                               COLOURS[i % len(COLOURS)], True))
    fig.add_hline(y=THRESHOLD, line={"dash": "dot", "color": "#555"}, annotation_text="1e-3")
    positive = [r["giveup_rate_lo"] for r in rows if r["giveup_rate_lo"] > 0]
    held_text = ", ".join(f"{k} = {v}" for k, v in held.items())
    fig.update_layout(
        height=420, template="plotly_white", margin={"t": 60, "l": 70, "r": 20, "b": 60},
        title={"text": f"give-up rate against {axis}"
                       + (f"<br><sup>held: {held_text}</sup>" if held_text else ""), "x": 0},
        xaxis={"type": "category", "title": {"text": axis}},
        yaxis={"type": "log", "exponentformat": "power",
               "title": {"text": "give-ups per logical call (95% Wilson)"},
               **({"range": [math.log10(min(positive)) - 0.5, 0.1]} if positive else {})},
        legend={"orientation": "h", "y": -0.25})
    return fig
