"""The report's live-side sections: the deployment timeline, the counterfactual, off-policy values.

    events = deployment_events(log)      # the control records, in log order
    replay.report.write_html(ev, "report.html", deployment=events, counterfactual=cf, ope=results)

`deployment_events` reads the ``control`` topic as recorded (kind, model, version, weight, who,
why, forced, append time) without folding it (the fold lives with the live service). The
timeline plot draws every model's per-window quality and latency p99 with the events as
vertical lines on the same time axis, so a ramp or a swap sits where its effect shows.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Event", "counterfactual_section", "deployment_events", "ope_section", "timeline_rows"]


@dataclass(frozen=True)
class Event:
    """One step on the deployment timeline."""

    time: dt.datetime  # append time (UTC)
    kind: str  # deploy, ramp, promote, retire, swap, refusal
    model: str
    detail: str  # version, weight, what a refusal refused
    who: str
    why: str
    forced: bool = False

    @property
    def label(self) -> str:
        return f"{self.kind} {self.model}" + (f" {self.detail}" if self.detail else "")


def deployment_events(log: Any, control: str = "control") -> list[Event]:
    """The control records of `log` (none if the topic is missing) as timeline events, in log order."""
    if control not in log.topics():
        return []
    table = log.read(control)
    times = table.column("_append_time").to_pylist()
    out = []
    for r, t in zip(table.to_pylist(), times, strict=True):
        kind = str(r["kind"])
        if kind == "refusal":
            detail = f"(refused {r.get('requested') or 'step'})"
        elif kind == "ramp":
            detail = f"to {r['weight']:g}" if r.get("weight") is not None else ""
        elif kind == "swap":
            detail = f"to {r['version']}"
        else:
            detail = str(r["version"]) if r.get("version") else ""
        out.append(
            Event(t, kind, str(r["model_id"]), detail, str(r["who"]), str(r.get("why") or ""), bool(r["forced"]))
        )
    return out


def timeline_rows(events: Sequence[Event]) -> list[dict[str, Any]]:
    """The events as the rows of the report's timeline table."""
    return [
        {
            "time": e.time.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z",
            "step": e.label + (" FORCED" if e.forced else ""),
            "who": e.who,
            "why": e.why,
        }
        for e in events
    ]


def draw_events(ax: Any, events: Sequence[Event]) -> None:
    """Vertical lines at `events` on a time axis (swaps dashed, refusals dotted), labelled."""
    colors = {"swap": "#8e44ad", "refusal": "#c0392b", "promote": "#27ae60", "ramp": "#2980b9"}
    styles = {"swap": "--", "refusal": ":"}
    for e in events:
        ax.axvline(e.time, color=colors.get(e.kind, "#555"), linestyle=styles.get(e.kind, "-"), linewidth=1)
        ax.annotate(
            e.label.replace("$", r"\$"),  # a model name is text, never mathtext
            (e.time, 1.0),
            xycoords=("data", "axes fraction"),
            rotation=90,
            fontsize=7,
            va="top",
            ha="right",
            color=colors.get(e.kind, "#555"),
        )


def counterfactual_section(cf: Any) -> str:
    """The counterfactual's summary tables (its `to_text()`), preformatted (the page's CSS lets a
    wide `pre` scroll sideways)."""
    return f"<pre>{html.escape(cf.to_text())}</pre>"


def ope_section(results: Mapping[str, Any]) -> str:
    """A table of off-policy values: one row per (target policy, estimator) with its interval."""
    rows = []
    for name, res in results.items():
        for est, e in res.estimates.items():
            ci = "-" if e.low is None else f"[{e.low:.4g}, {e.high:.4g}]"
            rows.append((name, est, f"{e.value:.4g}", ci, f"{res.n:,}", f"{res.ess:.4g}"))
    if not rows:
        return "<p class='meta'>(none)</p>"
    head = "".join(f"<th>{h}</th>" for h in ("target policy", "estimator", "value", "interval", "rounds", "ESS"))
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
