"""Deployment commands: each appends one `control` record (who, when, what, why) to the log.

    rendezvous deploy  LOG --model M --version V [--as shadow|challenger|canary]
    rendezvous ramp    LOG --model M --weight W [--force]
    rendezvous promote LOG --model M [--force]
    rendezvous retire  LOG --model M
    rendezvous history LOG [--json]

Every command takes ``--why TEXT`` and ``--config FILE`` (the service's config: its schedule is
generation 0 of the fold, its SLA the guardrail's; without it the fold starts from nothing
deployed, so a model only the config schedules is refused as unknown rather than guessed at).

A step is checked against the fold of the records before it (`ControlState.apply`): one that would
not apply is refused as a user mistake and nothing is appended. A ramp or promote first runs the
guardrail (`rendezvous.guardrail`): if it fails, only a ``refusal`` record is appended, with the
numbers, and the command exits 1; ``--force`` appends the step itself with ``forced = true`` and the
numbers. The running service applies each record from its append time on (`rendezvous.control`).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from logstore.timeutil import iso_z

from . import guardrail
from .config import Config, Topics, load_config
from .control import CONTROL_TOPIC, ControlState, ensure_control, make_record, read_records

__all__ = ["Step", "add_commands", "history", "step", "who"]

EXAMPLES = {
    "deploy": "rendezvous deploy ./log --model m4 --version 2 --as shadow --why 'retrained on May'",
    "ramp": "rendezvous ramp ./log --model m4 --weight 0.05 --config rendezvous.toml",
    "promote": "rendezvous promote ./log --model m4 --config rendezvous.toml",
    "retire": "rendezvous retire ./log --model m1 --why 'replaced by m4'",
    "history": "rendezvous history ./log",
}


def who() -> str:
    """``user@host`` of this process."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container)
        user = os.environ.get("USER") or str(os.getuid())
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True)
class Step:
    """What a command appended: the record, its offset, the state after it, the guardrail's report."""

    record: dict[str, Any]
    offset: int
    state: ControlState
    report: guardrail.Report | None = None

    @property
    def refused(self) -> bool:
        return bool(self.record["kind"] == "refusal")


def _latest_sla(log: Any, decisions: str) -> float | None:
    """The SLA the service recorded on its latest decision, None if there is none."""
    if decisions not in log.topics():
        return None
    ends = log.end_offsets(decisions)
    start = {p: max(0, e - 1) for p, e in ends.items()}
    rows = log.read(decisions, start=start, end=ends, columns=["sla_ms", "_append_time"]).to_pylist()
    rows = [r for r in rows if r["sla_ms"] is not None]
    return float(max(rows, key=lambda r: r["_append_time"])["sla_ms"]) if rows else None


def step(
    log: Any,
    kind: str,
    model_id: str,
    *,
    config: Config | None = None,
    version: str | None = None,
    role: str | None = None,
    weight: float | None = None,
    why: str = "",
    force: bool = False,
    by: str | None = None,
    window: str = guardrail.DEFAULT_WINDOW,
    tolerance: float = guardrail.DEFAULT_TOLERANCE,
    min_labeled: int = guardrail.MIN_LABELED,
    bootstrap: int = 1000,
) -> Step:
    """Append one control step (see the module docstring); `ControlError` if it does not apply."""
    ensure_control(log)
    records = read_records(log)
    state = _fold(config, records)
    cur = state.find(model_id)
    if kind in ("ramp", "promote", "retire") and cur is not None:
        version = cur.version
    rec = make_record(
        kind,
        model_id,
        who=by or who(),
        version=version,
        role={"ramp": "challenger", "promote": "champion"}.get(kind, role),
        weight=weight,
        why=why,
        generation=state.generation + 1,
    )
    state.apply(rec)  # raises ControlError: nothing appended
    report = None
    if kind in ("ramp", "promote"):
        topics = config.topics if config is not None else Topics()
        champion, canary = state.role("champion"), state.role("canary")
        report = guardrail.check(
            log,
            model_id,
            champion=champion.model_id if champion is not None else None,
            canary=canary.model_id if canary is not None else None,
            sla_ms=config.sla_ms if config is not None else _latest_sla(log, topics.decisions),
            scores=topics.scores,
            outcomes=topics.outcomes,
            window=window,
            tolerance=tolerance,
            min_labeled=min_labeled,
            bootstrap=bootstrap,
        )
        rec["guardrail"] = report.to_json()
        if not report.passed and not force:
            rec.update(kind="refusal", requested=kind, generation=state.generation)
        rec["forced"] = not report.passed and force
    with log.writer(CONTROL_TOPIC, durability="fsync", linger_ms=None) as w:
        w.append_batch([rec])
    after = read_records(log, len(records))
    mine = next(r for r in after if r["event_time"] == rec["event_time"] and r["who"] == rec["who"])
    return Step(rec, int(mine["_offset"]), _fold(config, records + after), report)


def _fold(config: Config | None, records: list[dict[str, Any]]) -> ControlState:
    state = ControlState.initial(config)
    for r in records:
        state, _ = state.fold(r, int(r["_offset"]), int(r["_append_us"]))
    return state


def history(log: Any, config: Config | None = None) -> list[dict[str, Any]]:
    """Every control record in log order, each with ``applied`` (the generation it made, None if
    it changed nothing), ``skipped`` (why not) and ``state`` (the deployment after it)."""
    state = ControlState.initial(config)
    out = []
    for r in read_records(log):
        state, reason = state.fold(r, int(r["_offset"]), int(r["_append_us"]))
        out.append({**r, "applied": None if reason else state.generation, "skipped": reason, "state": state})
    return out


# ---- the commands -----------------------------------------------------------------------------


def _open(args: argparse.Namespace, readonly: bool = False) -> Any:
    import logstore
    from logstore.errors import LogNotFoundError

    if not os.path.isdir(args.log):
        raise LogNotFoundError(f"no log at {args.log}")
    return logstore.open(args.log, readonly=readonly)


def _config(args: argparse.Namespace) -> Config | None:
    return load_config(args.config, decoy_only=True) if args.config else None


def _run_step(args: argparse.Namespace, kind: str) -> int:
    with _open(args) as log:
        done = step(
            log,
            kind,
            args.model,
            config=_config(args),
            version=getattr(args, "version", None),
            role=getattr(args, "role", None),
            weight=getattr(args, "weight", None),
            why=args.why,
            force=getattr(args, "force", False),
            **_guardrail_options(args),
        )
    rec, what = done.record, _what(done.record)
    if done.report is not None:
        print(f"guardrail for {kind} {args.model}:")
        print("\n".join(done.report.lines()))
    if done.refused:
        print(
            f"rendezvous: {kind} {args.model} refused by the guardrail; recorded as a refusal at control offset "
            f"{done.offset} (--force to override)",
            file=sys.stderr,
        )
        return 1
    forced = " (forced over a failed guardrail)" if rec["forced"] else ""
    print(f"control offset {done.offset}: {what}{forced}; {done.state.describe()}")
    return 0


def _guardrail_options(args: argparse.Namespace) -> dict[str, Any]:
    if not hasattr(args, "tolerance"):
        return {}
    return {"window": args.window, "tolerance": args.tolerance, "min_labeled": args.min_labeled}


def _what(r: dict[str, Any]) -> str:
    m = r["model_id"] + (f":{r['version']}" if r.get("version") else "")
    if r["kind"] == "deploy":
        return f"deploy {m} as {r.get('role') or 'challenger (or as it was)'}"
    if r["kind"] == "swap":
        return f"swap {r['model_id']} to {r['version']} (token {r.get('token')})"
    if r["kind"] in ("ramp",) or r.get("requested") == "ramp":
        return f"{r.get('requested') or r['kind']} {m} to {r['weight']:g}"
    return f"{r.get('requested') or r['kind']} {m}"


def cmd_history(args: argparse.Namespace) -> int:
    with _open(args, readonly=True) as log:
        rows = history(log, _config(args))
    if args.json:
        for r in rows:
            doc = {k: v for k, v in r.items() if k != "state"}
            doc["deployment"] = r["state"].describe()
            print(json.dumps(doc, default=str, sort_keys=True))
        return 0
    if not rows:
        print(f"no control records in {args.log} (topic {CONTROL_TOPIC!r})")
        return 0
    table = [["offset", "appended (UTC)", "step", "gen", "who", "why", "guardrail"]]
    for r in rows:
        what = ("refused " if r["kind"] == "refusal" else "") + _what(r) + (" FORCED" if r["forced"] else "")
        gen = "-" if r["applied"] is None else str(r["applied"])
        skipped = "" if r["kind"] == "refusal" else f"skipped: {r['skipped']}" if r["skipped"] else ""
        note = guardrail.summary(r.get("guardrail"), 60) or skipped
        table.append([str(r["_offset"]), iso_z(r["_append_us"])[:23] + "Z", what, gen, r["who"], r["why"], note])
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    print(rows[-1]["state"].describe())
    return 0


def add_commands(sub: Any, add_command: Callable[..., argparse.ArgumentParser]) -> None:
    """Add deploy, ramp, promote, retire and history to the `rendezvous` parser's subcommands."""

    def common(p: argparse.ArgumentParser, model: bool = True) -> None:
        if model:
            p.add_argument("--model", required=True, help="the model id")
            p.add_argument("--why", default="", help="the reason, kept with the record")
        p.add_argument("--config", help="the service's config (its schedule is generation 0; its SLA the guardrail's)")

    def guarded(p: argparse.ArgumentParser) -> None:
        p.add_argument("--force", action="store_true", help="take the step even if the guardrail fails (recorded)")
        p.add_argument("--window", default=guardrail.DEFAULT_WINDOW, help="bootstrap block (default %(default)s)")
        p.add_argument(
            "--tolerance",
            type=float,
            default=guardrail.DEFAULT_TOLERANCE,
            help="largest loss delta upper bound vs champion and canary (default %(default)s)",
        )
        p.add_argument(
            "--min-labeled",
            type=int,
            default=guardrail.MIN_LABELED,
            help="fewest labelled pairs per reference (default %(default)s)",
        )

    p = add_command(sub, "deploy", lambda a: _run_step(a, "deploy"), "deploy a model version", EXAMPLES["deploy"])
    common(p)
    p.add_argument("--version", required=True, help="the model version (only its scores answer for it)")
    p.add_argument(
        "--as",
        dest="role",
        choices=("shadow", "challenger", "canary"),
        default=None,
        help="its role (default: challenger for a new model, unchanged for a deployed one)",
    )
    what = "let a model serve a share of requests, first (guardrail checked)"
    p = add_command(sub, "ramp", lambda a: _run_step(a, "ramp"), what, EXAMPLES["ramp"])
    common(p)
    p.add_argument("--weight", type=float, required=True, help="the share of requests, in [0, 1]")
    guarded(p)
    what = "make a model the champion (guardrail checked)"
    p = add_command(sub, "promote", lambda a: _run_step(a, "promote"), what, EXAMPLES["promote"])
    common(p)
    guarded(p)
    what = "take a model out of the deployment"
    p = add_command(sub, "retire", lambda a: _run_step(a, "retire"), what, EXAMPLES["retire"])
    common(p)
    p = add_command(sub, "history", cmd_history, "list the control records and the deployment", EXAMPLES["history"])
    common(p, model=False)
    p.add_argument("--json", action="store_true", help="one JSON object per record")
