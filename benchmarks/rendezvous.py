"""`python -m benchmarks.rendezvous`: the front door's own cost, on loopback, against the floor.

    python -m benchmarks.rendezvous                       # ~1.5 minutes, writes benchmarks/RENDEZVOUS.md
    python -m benchmarks.rendezvous --seconds 4 --out /tmp/R.md

Cases, each a fresh log, a `rendezvous serve` process and runner processes (`rendezvous model`):

- ``fast``: one fast model scheduled first, 300 requests/s, commits on the event loop (``loop``)
  and on the committer thread (``thread``). Measured: the service's own overhead (the answer's
  ``latency_ms``, taken just before the answer is written, minus the served score's arrival in the
  decision record), the end-to-end time at the client, the answer time against the SLA;
- ``mixed``: fast, slow (heavy-tailed), failing and stalling models scheduled in turn, same rate:
  the answer time's p99.9 against the SLA, and how requests were decided;
- ``floor``: the same fast model called in-process on one-row batches (no HTTP, no log).

Every process is stopped whatever happens (`rendezvous.launch.Fleet`); the client is bounded in
count and time (`rendezvous.client.send`). The machine's load average is printed with the table:
on a shared machine it moves every number.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import tempfile
import time
import zlib
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

import logstore
from rendezvous import heap
from rendezvous.client import Result, percentile, send
from rendezvous.launch import Fleet

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SLA_MS = 50.0


# ---- the models (importable by the runners: benchmarks.rendezvous:fast, ...) ----------------------
class Hash:
    """Scores each request by a hash of its id: no work beyond reading the batch."""

    def __init__(self, name: str) -> None:
        self.name, self.version = name, "1"

    def predict(self, batch: pa.RecordBatch, ctx: Any) -> np.ndarray:
        ids = batch.column(batch.schema.get_field_index("request_id")).to_pylist()
        return np.array([zlib.crc32(f"{self.name}/{r}".encode()) / 2**32 for r in ids])


class Slow(Hash):
    """Pareto-distributed time per batch (alpha 1.5, median 5 ms, capped at 200 ms)."""

    def predict(self, batch: pa.RecordBatch, ctx: Any) -> np.ndarray:
        u = (zlib.crc32(str(batch.column(0)[0]).encode()) % 10_000 + 0.5) / 10_000
        time.sleep(min(5.0 * 2 ** (-1 / 1.5) * u ** (-1 / 1.5), 200.0) / 1000)
        return super().predict(batch, ctx)


class Failing(Hash):
    """Raises on every fourth batch (by the hash of its first request)."""

    def predict(self, batch: pa.RecordBatch, ctx: Any) -> np.ndarray:
        if zlib.crc32(str(batch.column(0)[0]).encode()) % 4 == 0:
            raise RuntimeError("cannot score this batch")
        return super().predict(batch, ctx)


class Stalling(Hash):
    """Never answers (sleeps for an hour on its first batch)."""

    def predict(self, batch: pa.RecordBatch, ctx: Any) -> np.ndarray:
        time.sleep(3600)
        return super().predict(batch, ctx)


def fast() -> Hash:
    return Hash("fast")


def slow() -> Slow:
    return Slow("slow")


def failing() -> Failing:
    return Failing("failing")


def stalling() -> Stalling:
    return Stalling("stalling")


def _config(models: list[tuple[str, float]]) -> str:
    steps = "".join(f'[[schedule]]\nmodel = "{m}"\nafter_ms = {a}\n' for m, a in models)
    return f"sla_ms = {SLA_MS}\ndefault = {{ score = 0.0 }}\n{steps}"


CASES: dict[str, list[tuple[str, float]]] = {
    "fast": [("fast", 0)],
    "mixed": [("slow", 0), ("failing", 5), ("fast", 12), ("stalling", 20)],
}


def _cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_case(work: Path, case: str, mode: str, rate: float, seconds: float) -> dict[str, Any]:
    """One case: processes up, warm-up, `rate` x `seconds` requests, everything down; figures."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "c.toml").write_text(_config(CASES[case]))
    n = int(rate * seconds)
    bodies = [{"request_id": f"{case}-{mode}-{i}", "features": {"x": float(i % 13)}} for i in range(n)]
    log_dir = work / "log"
    with Fleet(log_dir, work / "p", env={"PYTHONPATH": str(ROOT)}, cwd=ROOT, grace=3.0) as fleet:
        url = fleet.serve(work / "c.toml", "--commit-in", mode)
        for model, _ in CASES[case]:
            fleet.model(f"benchmarks.rendezvous:{model}", name=model)
        _warm_up(url, log_dir, [m for m, _ in CASES[case] if m in ("fast", "slow")])
        pids = {name: p.pid for name, p in fleet.procs.items()}
        before = {name: _cpu(pid) for name, pid in pids.items()}
        heap.settle()  # the client's own collector pauses are not the service's latency
        try:
            t = time.monotonic()
            results = asyncio.run(send(url, bodies, rate=rate, concurrency=64, timeout=seconds + 60))
            elapsed = time.monotonic() - t
        finally:
            gc.unfreeze()
        cpu = {name: (_cpu(pid) - before[name]) / elapsed for name, pid in pids.items()}
    return _figures(case, mode, log_dir, results, elapsed, cpu)


def _warm_up(url: str, log_dir: Path, models: list[str], timeout: float = 60.0) -> None:
    """Requests until the answering models have scored, then 200 more at 100/s (the service
    measures its overhead allowance, the partitions' files are open)."""
    log = logstore.open(log_dir)
    deadline = time.monotonic() + timeout
    i = 0
    while time.monotonic() < deadline:
        asyncio.run(send(url, [{"request_id": f"warm-{i}", "features": {}}], timeout=10))
        i += 1
        if "scores" in log.topics():
            seen = set(log.read("scores", columns=["model_id"]).column("model_id").to_pylist())
            if set(models) <= seen:
                break
        time.sleep(0.05)
    asyncio.run(send(url, [{"features": {}} for _ in range(200)], rate=100, concurrency=8, timeout=30))


def _figures(
    case: str, mode: str, log_dir: Path, results: list[Result], elapsed: float, cpu: dict[str, float]
) -> dict[str, Any]:
    log = logstore.open(log_dir)
    decisions = {d["request_id"]: d for d in log.read("decisions").to_pylist(maps_as_pydicts="strict")}
    ok = [r for r in results if r.status == 200 and r.answer]
    answer_ms = [r.answer["latency_ms"] for r in ok if r.answer]
    overhead, arrival = [], []
    for r in ok:
        a = r.answer or {}
        d = decisions.get(a["request_id"])
        if d is not None and a["model"] != "default":
            arrival.append(d["arrivals"][d["chosen_model"]])
            overhead.append(a["latency_ms"] - arrival[-1])
    reasons = Counter((r.answer or {})["reason"] for r in ok)
    return {
        "case": case,
        "mode": mode,
        "requests": len(results),
        "answered": len(ok),
        "rate": len(results) / elapsed,
        "served_by_model": sum(v for k, v in reasons.items() if k != "default") / max(1, len(ok)),
        "reasons": dict(reasons),
        "overhead_p50": percentile(overhead, 0.5),
        "overhead_p99": percentile(overhead, 0.99),
        "arrival_p50": percentile(arrival, 0.5),
        "arrival_p99": percentile(arrival, 0.99),
        "e2e_p50": percentile([r.client_ms for r in ok], 0.5),
        "e2e_p99": percentile([r.client_ms for r in ok], 0.99),
        "answer_p999": percentile(answer_ms, 0.999),
        "within_sla": sum(1 for x in answer_ms if x <= SLA_MS) / max(1, len(answer_ms)),
        "cpu": cpu,
    }


def floor(n: int = 3000) -> dict[str, Any]:
    """The fast model called in-process on one-row batches, as a runner would call it."""
    model = fast()
    schema = pa.schema([("request_id", pa.string()), ("features", pa.map_(pa.string(), pa.float64()))])
    times = []
    for i in range(n):
        t = time.perf_counter()
        batch = pa.RecordBatch.from_pylist([{"request_id": f"r{i}", "features": {"x": 1.0}}], schema=schema)
        model.predict(batch, None)
        times.append((time.perf_counter() - t) * 1000)
    return {"case": "floor", "mode": "in-process", "p50": percentile(times, 0.5), "p99": percentile(times, 0.99)}


def report(rows: list[dict[str, Any]], fl: dict[str, Any], load: tuple[str, str], seconds: float, rate: float) -> str:
    def ms(v: float) -> str:
        return "-" if v != v else f"{v:.2f}"

    lines = [
        "# The rendezvous front door: its own cost",
        "",
        f"`python -m benchmarks.rendezvous --seconds {seconds:g} --rate {rate:g}` on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, loopback; SLA {SLA_MS:g} ms; "
        f"load average {load[0]} before, {load[1]} after (a shared machine: other tenants' work moves every "
        "number). Overhead = the answer's `latency_ms` (just before it is written) minus the served score's "
        "arrival (decision record); end to end = the client's send to last byte; answer = the service's "
        "`latency_ms`; arrival = when the served score reached the service, after the request arrived.",
        "",
        "| case | commits | offered /s | answered | by a model | arrival p50 | arrival p99 | overhead p50 "
        "| overhead p99 | end to end p50 | end to end p99 | answer p99.9 | within SLA | service CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['mode']} | {r['rate']:.0f} | {r['answered']:,}/{r['requests']:,} "
            f"| {100 * r['served_by_model']:.1f}% | {ms(r['arrival_p50'])} | {ms(r['arrival_p99'])} "
            f"| {ms(r['overhead_p50'])} | {ms(r['overhead_p99'])} "
            f"| {ms(r['e2e_p50'])} | {ms(r['e2e_p99'])} | {ms(r['answer_p999'])} | {100 * r['within_sla']:.2f}% "
            f"| {100 * r['cpu'].get('service', 0):.0f}% |"
        )
    lines.append(
        f"| floor: the fast model in-process, one-row batch | - | - | - | - | - | - | - | - | {ms(fl['p50'])} "
        f"| {ms(fl['p99'])} | - | - | - |"
    )
    lines += ["", "How requests were decided, and each process's CPU (share of one core):", ""]
    for r in rows:
        reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(r["reasons"].items()))
        cpu = ", ".join(f"{k} {100 * v:.0f}%" for k, v in r["cpu"].items())
        lines.append(f"- {r['case']} / {r['mode']}: {reasons}; CPU {cpu}")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.rendezvous", description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0, help="traffic per case (default %(default)s)")
    ap.add_argument("--rate", type=float, default=300.0, help="requests per second (default %(default)s)")
    ap.add_argument("--out", type=Path, default=HERE / "RENDEZVOUS.md")
    ap.add_argument("--cases", default="fast:loop,fast:thread,mixed:loop,mixed:thread")
    args = ap.parse_args(argv)
    load0 = open("/proc/loadavg").read().split()[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-rendezvous-") as tmp:
        for spec in args.cases.split(","):
            case, _, mode = spec.partition(":")
            row = run_case(Path(tmp) / spec.replace(":", "-"), case, mode or "loop", args.rate, args.seconds)
            print(
                f"{spec}: overhead p50 {row['overhead_p50']:.2f} p99 {row['overhead_p99']:.2f} ms, end to end "
                f"p99 {row['e2e_p99']:.2f} ms, answer p99.9 {row['answer_p999']:.2f} ms, "
                f"{100 * row['served_by_model']:.1f}% by a model",
                flush=True,
            )
            rows.append(row)
    fl = floor()
    load1 = open("/proc/loadavg").read().split()[0]
    text = report(rows, fl, (load0, load1), args.seconds, args.rate)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
