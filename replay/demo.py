"""The end-to-end demo: record a week of fraud scoring, replay two candidates, evaluate.

    python -m replay.demo --out demo-output [--days 7] [--rate 6] [--seed 0] [--workers 2]

1. `replay.datasets.fraud` records a week of production traffic (inputs as the decoy archives
   them, champion and canary scores, rendezvous decisions, delayed outcomes, metrics) into
   ``OUT/log`` through the real writers, on a simulated clock.
2. `replay.run` replays the recorded inputs and outcomes into two candidates: `Challenger`, which
   uses a feature the champion ignores, and `Peeker`, which asks for its own request's outcome
   three days ahead. The engine stops the peeker with `TimeLeakError`; the demo prints what the
   engine said, then audits the challenger's run and prints the certificate.
3. `replay.evaluate` compares champion, canary and challenger in DuckDB SQL; the summary is
   printed and the HTML report written to ``OUT/report.html``. Two questions asked in SQL follow.

The models are importable (``replay.demo:make_challenger``), so the same replay runs from the
shell: ``replay run OUT/log --inputs inputs --outcomes outcomes --model replay.demo:make_challenger``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .datasets import fraud as sim

MARKER = ".logstore-demo"  # written into --out, so a re-run may replace what an earlier run made
PRODUCTION = "scores"
REPLAYED = "replay.scores"
PEEKED = "replay.peeker"

# fitted offline on an earlier month that already had the device signal: close to, not equal to,
# the process that generates the traffic
CHALLENGER_WEIGHTS = {
    "bias": -6.6,
    "log_amount": 0.43,
    "merchant_risk": 3.0,
    "log_card_age": -0.32,
    "txn_24h": 0.16,
    "log_distance": 0.2,
    "foreign": 0.85,
    "new_device": 1.75,
    "night": 0.55,
}


class Challenger:
    """A logistic model on every archived feature, `new_device` included (the champion ignores it)."""

    name = "challenger"
    version = "1.0"

    def __init__(self, weights: dict[str, float] | None = None) -> None:
        self.weights = dict(CHALLENGER_WEIGHTS if weights is None else weights)

    @property
    def params(self) -> dict[str, float]:
        return self.weights

    def predict(self, batch: Any, ctx: Any) -> np.ndarray:
        z = sim.logit(sim.features_of(batch), self.weights)
        return 1.0 / (1.0 + np.exp(-z))


class Peeker:
    """Wants each request's own outcome, as known three days later: a leak the engine refuses."""

    name = "peeker"
    version = "0.1"
    lookups: ClassVar[dict[str, str]] = {"outcomes": "request_id"}
    ahead = timedelta(days=3)

    def predict(self, batch: Any, ctx: Any) -> Any:
        future = ctx.lookup("outcomes", "request_id", as_of=ctx.now + self.ahead, columns=["label"])
        return future.column("label").fill_null(0.0)


def make_challenger() -> Challenger:
    return Challenger()


def make_peeker() -> Peeker:
    return Peeker()


# ---- output helpers --------------------------------------------------------------------------


class Printer:
    """Section headers, indented lines and aligned tables on a stream."""

    def __init__(self, out: Any = None) -> None:
        self.out = out if out is not None else sys.stdout

    def __call__(self, text: str = "", indent: int = 0) -> None:
        pad = " " * indent
        print("\n".join(pad + line if line else line for line in text.split("\n")), file=self.out)

    def section(self, number: int, title: str) -> None:
        head = f"{number}. {title}"
        self(f"\n{head}\n{'-' * len(head)}")

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]], indent: int = 2) -> None:
        cells = [[_cell(v) for v in row] for row in rows]
        numeric = [all(_is_number(row[i]) for row in rows) and bool(rows) for i in range(len(header))]
        widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(header)]

        def line(values: Sequence[str]) -> str:
            return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

        self(line(list(header)), indent)
        self(line(["-" * w for w in widths]), indent)
        for r in cells:
            self(line(r), indent)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) or v is None


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, (bool, np.bool_)):
        return str(v)
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        if abs(float(v)) >= 1000:
            return f"{float(v):,.0f}"
        text = f"{float(v):.3f}".rstrip("0")
        return text + "0" if text.endswith(".") else text
    if hasattr(v, "strftime"):
        return v.strftime("%Y-%m-%d %H:%M") if (v.hour or v.minute) else v.strftime("%Y-%m-%d")
    return str(v)


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t = time.perf_counter()
    return fn(), time.perf_counter() - t


def _fmt_time(t: Any) -> str:
    return t.strftime("%a %Y-%m-%d %H:%M UTC")


# ---- the steps -------------------------------------------------------------------------------


def prepare_out(out: Path) -> Path:
    """Create `out`, or clear what an earlier demo wrote there; refuse anything else."""
    log_dir, marker = out / "log", out / MARKER
    if log_dir.exists():
        if not marker.exists():
            raise SystemExit(f"replay.demo: {log_dir} exists and was not written by the demo; choose another --out")
        shutil.rmtree(log_dir)
        (out / "report.html").unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text("written by `python -m replay.demo`; the demo replaces log/ and report.html here\n")
    return log_dir


def record(
    p: Printer, log: Any, days: float, rate: float, seed: int, tick: timedelta, compression: str | None
) -> sim.Traffic:
    p.section(1, "Recording a week of production traffic")
    p(
        "A card-payment fraud-scoring service, simulated. Every request goes through the rendezvous:\n"
        "the decoy archives the input, the champion and a frozen canary score it, the rendezvous\n"
        "policy (rendezvous.policy, as served live) picks an answer within the deadline; outcomes\n"
        "arrive later (settlement, chargebacks).\n"
        "All of it through logstore writers on the simulated clock, committing every "
        f"{tick / timedelta(minutes=1):g} minutes.",
        2,
    )
    tr = sim.simulate(log, days=days, rate=rate, seed=seed, tick=tick, compression=compression)
    p()
    rows = []
    for name, (schema, parts) in sim.TOPICS.items():
        info = log.describe(name)
        rows.append([name, schema, parts, info["records"], _size(info["bytes"])])
    p.table(["topic", "schema", "partitions", "records", "size"], rows)
    p()
    reasons = tr.decision_reasons
    total = max(1, sum(reasons.values()))
    shares = "  ".join(f"{r} {100 * n / total:.1f}%" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1]) if n)
    p(
        f"requests     {tr.requests:,} from {_fmt_time(tr.start)} to {_fmt_time(tr.end)}\n"
        f"fraud rate   {100 * tr.fraud_rate:.2f}%; {tr.outcomes_pending:,} outcomes not yet known at the end\n"
        f"decisions    {shares}\n"
        f"input drift  from {_fmt_time(tr.drift_start)}: amounts up to +60%, twice the foreign cards\n"
        f"             ({tr.commits:,} commits in {tr.seconds:.1f} s)",
        2,
    )
    return tr


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def replay_candidates(p: Printer, log: Any, workers: int) -> tuple[Any, str]:
    import replay
    from logstore.errors import TimeLeakError

    p.section(2, "Replaying two candidates over the recorded week")
    p("Inputs and outcomes are merged by append time; each model sees only what was known at\neach request's clock.", 2)
    p()
    p(f"challenger {Challenger.version}: uses new_device, which the champion ignores", 2)
    run, secs = _timed(
        lambda: replay.run(
            log, inputs="inputs", outcomes="outcomes", models=[Challenger()], output=REPLAYED, workers=workers
        )
    )
    rows = run.manifest["rows"]
    p(
        f"run {run.id}  {run.status}  {rows['outputs']:,} scores -> topic {run.output!r}  "
        f"({secs:.1f} s, {workers} worker(s))\n"
        f"content hash {run.content_hash}",
        4,
    )
    p()
    p(f"peeker {Peeker.version}: looks up its own request's outcome as of clock + 3 days", 2)
    try:
        replay.run(
            log, inputs="inputs", outcomes="outcomes", models=[Peeker()], output=PEEKED, workers=1, progress=False
        )
        leak = "NOT STOPPED (this is a bug: the engine should have refused)"
    except TimeLeakError as err:
        said = textwrap.fill(str(err), width=92, initial_indent="  ", subsequent_indent="  ")
        leak = f"stopped by the engine: TimeLeakError\n{said}"
    failed = [r for r in replay.runs(log) if any(m["name"] == Peeker.name for m in r.manifest["models"])]
    p(leak, 4)
    if failed:
        r = failed[-1]
        p(
            f"run {r.id} is marked {r.status}; its scores topic {PEEKED!r} holds "
            f"{r.manifest['rows'].get('outputs', 0):,} rows",
            4,
        )

    p.section(3, "Audit of the challenger's run")
    cert, secs = _timed(lambda: replay.audit(log, run.id))
    p(str(cert), 2)
    p(f"({secs:.1f} s)", 2)
    return run, leak


def evaluate(p: Printer, log: Any, traffic: sim.Traffic, out: Path) -> tuple[Any, Path]:
    import replay
    import replay.report

    p.section(4, "Evaluation: champion, canary and challenger, in DuckDB SQL")
    ev, secs = _timed(
        lambda: replay.evaluate(
            log,
            scores=[PRODUCTION, REPLAYED],
            outcomes="outcomes",
            inputs="inputs",
            champion=sim.CHAMPION[0],
            canary=sim.CANARY[0],
            window="1 day",
            cutoff=traffic.end,
        )
    )
    p(replay.report.summary(ev), 2)
    path = replay.report.write_html(ev, out / "report.html")
    p()
    p(f"({secs:.1f} s)  HTML report: {path}", 2)
    return ev, path


QUESTIONS = [
    (
        "How were answers chosen?",
        (
            "SELECT reason, count(*) AS requests,\n"
            "       round(100.0 * count(*) / sum(count(*)) OVER (), 2) AS pct,\n"
            "       round(avg(propensity), 3) AS avg_propensity\n"
            "FROM decisions GROUP BY reason ORDER BY requests DESC"
        ),
    ),
    (
        "How late do outcomes arrive?",
        (
            "SELECT o.source, count(*) AS outcomes,\n"
            "       round(median(epoch(o._append_time - i.event_time)) / 3600, 1) AS median_hours,\n"
            "       round(quantile_cont(epoch(o._append_time - i.event_time), 0.9) / 3600, 1) AS p90_hours\n"
            "FROM outcomes o JOIN inputs i USING (request_id) GROUP BY o.source ORDER BY median_hours"
        ),
    ),
    (
        "Did the inputs drift? (mean amount and foreign share per day)",
        (
            "SELECT date_trunc('day', event_time) AS day, count(*) AS requests,\n"
            "       round(avg(features['amount']), 1) AS mean_amount,\n"
            "       round(100 * avg(features['foreign']), 1) AS foreign_pct\n"
            "FROM inputs GROUP BY day ORDER BY day"
        ),
    ),
]


def ask(p: Printer, log: Any) -> None:
    p.section(5, "Asking the log in SQL (each topic is a DuckDB view)")
    con = log.duckdb()
    for question, query in QUESTIONS:
        p(f"{question}", 2)
        p("\n".join("> " + line for line in query.split("\n")), 4)
        res = con.sql(query)
        p.table(res.columns, res.fetchall(), indent=4)
        p()


def main(argv: Sequence[str] | None = None, out: Any = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m replay.demo",
        description="Record a simulated week of fraud scoring, replay two candidates (one honest, "
        "one that tries to see the future), audit and evaluate.",
        epilog="example:\n  python -m replay.demo --out demo-output --days 7 --rate 6",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", default="demo-output", help="output directory (default %(default)s)")
    parser.add_argument("--days", type=float, default=7.0, help="simulated days (default %(default)s)")
    parser.add_argument(
        "--rate", type=float, default=6.0, help="mean requests per minute (default %(default)s: ~60,000 a week)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--tick",
        type=float,
        default=5.0,
        metavar="MINUTES",
        help="simulated minutes per commit of the writers (default %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="replay worker processes for the stateless candidate (default %(default)s)",
    )
    args = parser.parse_args(argv)
    try:  # the demo ends in the HTML report: say what to install before doing any work
        from replay.report_plots import require

        require()
    except ImportError as e:
        print(f"python -m replay.demo: {e}", file=sys.stderr)
        return 2
    if args.days <= 0 or args.rate <= 0 or args.tick <= 0 or args.workers < 1:
        parser.error("--days, --rate and --tick must be positive, --workers at least 1")

    import logstore

    p = Printer(out)
    began = time.perf_counter()
    outdir = Path(args.out)
    log_dir = prepare_out(outdir)
    title = "logstore demo: record, replay without time leaks, evaluate"
    p(f"{title}\n{'=' * len(title)}")
    with logstore.open(log_dir) as log:
        # frames here hold a few dozen records (one commit per few simulated minutes), too small
        # for zstd to pay for itself; the log's default (zstd) is for bigger batches
        traffic = record(p, log, args.days, args.rate, args.seed, timedelta(minutes=args.tick), compression=None)
        replay_candidates(p, log, args.workers)
        _, report = evaluate(p, log, traffic, outdir)
        ask(p, log)
    total = time.perf_counter() - began
    p(
        f"Done in {total:.0f} s.\n"
        f"  log     {log_dir}\n"
        f"  report  {report}\n"
        "Next:\n"
        f"  logstore describe {log_dir}\n"
        f"  replay runs {log_dir}\n"
        f"  replay report {log_dir} --scores {PRODUCTION} --scores {REPLAYED} --outcomes outcomes "
        f"--champion {sim.CHAMPION[0]} --canary {sim.CANARY[0]}\n"
        f"  jupyter lab examples/analysis.ipynb    # LOGSTORE_DEMO_LOG={log_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
