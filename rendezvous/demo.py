"""The live demo: a front door and three model runners on loopback, real traffic, then replay.

    python -m rendezvous.demo --out demo-output/live [--requests 2000] [--rate 100] [--seed 0]

1. Starts ``rendezvous serve`` (a free port on 127.0.0.1) and three ``rendezvous model`` runners
   on one log: the champion, a challenger and a frozen canary (served as the fallback after
   40 ms). Fraud-scoring models, as in `replay.demo`. The challenger is deployed as a shadow
   (``rendezvous deploy --as shadow``: scored and kept, never served).
2. A bounded client sends a few thousand card payments in three phases (inputs drift in the last
   third: larger amounts, more foreign cards), posting outcomes (fraud or not, and a reward for
   the answer served) as delayed feedback. Between phases, all on the running service: the
   challenger is ramped to half the traffic once the guardrail passes (``rendezvous ramp``: its
   loss against champion and canary on the outcomes known by then, and its latency), and the
   champion is hot-swapped to a new version with a token (``rendezvous swap``).
3. Everything is stopped (always, whatever happened), and the log is read back: every answer is
   its decision record; every decision replays from its recorded arrivals under its control
   generation; the version that served each request is the one the tokens' cut gives; the
   challenger replayed offline (`replay.run`) gives exactly the scores it gave live;
   `replay.evaluate` compares the models and the HTML report adds the deployment timeline, a
   counterfactual SLA and the off-policy value of always ramping the challenger; the status screen
   (`rendezvous status`) shows lag, latency, served share and the canary's PSI.

The model factories are importable (``rendezvous.demo:make_champion``, ``make_canary``,
``replay.demo:make_challenger``), so each runner is the same command a deployment would run.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import logstore
from replay.datasets import fraud
from replay.demo import Challenger, Printer
from replay.engine.tokens import VersionCut
from replay.ope import evaluate_policy
from replay.report_sections import deployment_events

from . import deploy, swap
from .client import Result, percentile, post_outcomes, send
from .config import load_config
from .control import ControlPlane
from .launch import Fleet
from .status import status

MARKER = ".rendezvous-demo"
SLA_MS = 100  # generous for a shared 2-core machine running five processes; see benchmarks/RENDEZVOUS.md
CONFIG = f"""# the live demo's rendezvous: the champion first, the frozen canary as the fallback after 40 ms
sla_ms = {SLA_MS}
default = {{ score = 0.0 }}
metrics_interval_s = 2
[[schedule]]
model = "champion"
after_ms = 0
[[schedule]]
model = "canary"
after_ms = 40
"""
REPLAYED = "replay.challenger"
# a target policy for off-policy evaluation: the challenger first for every request
ALWAYS_CHALLENGER = f"""sla_ms = {SLA_MS}
default = {{ score = 0.0 }}
[[schedule]]
model = "challenger"
[[schedule]]
model = "champion"
after_ms = 20
[[schedule]]
model = "canary"
after_ms = 40
"""


class Logistic:
    """A fraud model: logistic regression with fixed weights over the request's features."""

    def __init__(self, name: str, version: str, weights: dict[str, float]) -> None:
        self.name, self.version, self.weights = name, version, dict(weights)

    @property
    def params(self) -> dict[str, float]:
        return self.weights

    def predict(self, batch: Any, ctx: Any) -> Any:
        z = fraud.logit(fraud.features_of(batch), self.weights)
        return 1.0 / (1.0 + np.exp(-z))


HOTFIX = "3.3"  # the champion's next version: it learns the weight of new_device
CHAMPION_VERSIONS = {
    fraud.CHAMPION[1]: fraud.CHAMPION_WEIGHTS,
    HOTFIX: {**fraud.CHAMPION_WEIGHTS, "new_device": 1.6},
}


def make_champion(version: str = fraud.CHAMPION[1]) -> Logistic:
    """The champion at `version` (a factory taking a version: ``rendezvous swap`` can switch it)."""
    weights = CHAMPION_VERSIONS.get(version)
    if weights is None:
        raise ValueError(f"no champion version {version!r} (known: {', '.join(CHAMPION_VERSIONS)})")
    return Logistic(fraud.CHAMPION[0], version, weights)


def make_canary() -> Logistic:
    return Logistic(*fraud.CANARY, fraud.CANARY_WEIGHTS)


RUNNERS = (
    ("champion", "rendezvous.demo:make_champion", "champion"),
    ("challenger", "replay.demo:make_challenger", "shadow"),  # serves once the ramp says so
    ("canary", "rendezvous.demo:make_canary", "canary"),
)


def traffic(n: int, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`n` payment requests (features drift over the last third) and each one's true outcome."""
    rng = np.random.default_rng(seed)
    ramp = np.clip((np.arange(n) / max(1, n - 1) - 2 / 3) * 3, 0.0, 1.0)
    f = {
        "amount": np.round(rng.lognormal(3.3, 1.0, n) * (1.0 + 0.6 * ramp), 2),
        "merchant_risk": np.round(rng.beta(2.0, 9.0, n), 4),
        "card_age_days": np.floor(rng.exponential(420.0, n)),
        "txn_24h": rng.poisson(2.0, n).astype(np.float64),
        "distance_km": np.round(rng.lognormal(2.0, 1.2, n), 1),
        "foreign": (rng.random(n) < 0.07 * (1.0 + ramp)).astype(np.float64),
        "new_device": (rng.random(n) < 0.09).astype(np.float64),
        "night": (rng.random(n) < 0.25).astype(np.float64),
    }
    p = 1.0 / (1.0 + np.exp(-fraud.logit(f, fraud.TRUE_WEIGHTS)))
    labels = rng.random(n) < p
    requests, outcomes = [], []
    for i in range(n):
        rid = f"pay-{seed}-{i:05d}"
        requests.append({"request_id": rid, "features": {k: float(v[i]) for k, v in f.items()}})
        outcomes.append({"request_id": rid, "label": float(labels[i]), "source": "chargeback-feed"})
    return requests, outcomes


def feedback(outcomes: list[dict[str, Any]], results: list[Result]) -> list[dict[str, Any]]:
    """The outcomes of the answered requests, each with the reward of the answer served
    (1 - squared error of its score): what off-policy evaluation values a policy by."""
    out = []
    for o, r in zip(outcomes, results, strict=True):
        if r.answer:
            err = float(r.answer["score"]) - o["label"]
            out.append({**o, "reward": round(1.0 - err * err, 6)})
    return out


def prepare_out(out: Path) -> Path:
    """Create `out`, or clear what an earlier live demo wrote there; refuse anything else."""
    marker = out / MARKER
    if out.exists() and any(out.iterdir()) and not marker.exists():
        raise SystemExit(f"rendezvous.demo: {out} exists and was not written by the demo; choose another --out")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    marker.write_text("written by `python -m rendezvous.demo`; a re-run replaces this directory\n")
    return out / "log"


def run_live(p: Printer, out: Path, log_dir: Path, n: int, rate: float, seed: int) -> list[Result]:
    """Steps 1 and 2: the processes, the traffic in three phases with a deployment step between
    them, the outcomes; every process stopped after."""
    cfg = out / "rendezvous.toml"
    cfg.write_text(CONFIG)
    requests, outcomes = traffic(n, seed)
    p.section(1, "Starting the front door and three model runners on loopback")
    answered: list[Result] = []
    with Fleet(log_dir, out / "processes", grace=5.0) as fleet:
        began = time.perf_counter()
        url = fleet.serve(cfg)
        for name, spec, role in RUNNERS:
            fleet.model(spec, role=role, name=name)
        p(f"rendezvous serve {log_dir} --config {cfg}   ->  {url}", 2)
        for _, spec, role in RUNNERS:
            p(f"rendezvous model {log_dir} --model {spec} --role {role}", 2)
        with logstore.open(log_dir) as log:
            done = deploy.step(
                log,
                "deploy",
                "challenger",
                config=load_config(cfg),
                version=Challenger.version,
                role="shadow",
                why="retrained: uses new_device",
            )
        p(f"rendezvous deploy {log_dir} --model challenger --version {Challenger.version} --as shadow", 2)
        p(f"  -> control offset {done.offset}: {done.state.describe()}", 2)
        ready = _warm_up(url, log_dir, requests[:1])
        p(f"(all listening and scoring after {time.perf_counter() - began:.1f} s; {ready} warm-up requests)", 2)

        cuts = [0, n // 2, (3 * n) // 4, n]
        phases = [(cuts[i], cuts[i + 1]) for i in range(3)]
        for k, (lo, hi) in enumerate(phases):
            p.section(2, f"Traffic, phase {k + 1} of 3: {hi - lo:,} payments at {rate:g}/s, then their outcomes")
            t = time.perf_counter()
            results = asyncio.run(send(url, requests[lo:hi], rate=rate, concurrency=32, timeout=120))
            secs = time.perf_counter() - t
            mine = [r for r in results if r.status == 200 and r.answer]
            posted = asyncio.run(post_outcomes(url, feedback(outcomes[lo:hi], results), rate=2000))
            _print_traffic(p, results, mine, secs, sum(1 for r in posted if r.status == 200))
            answered += mine
            if k == 0:
                _ramp(p, log_dir, cfg)
            elif k == 1:
                _swap(p, log_dir, cfg)
    codes = fleet.stop()
    p(f"stopped: {', '.join(f'{k} exit {v}' for k, v in codes.items())}", 2)
    return answered


def _ramp(p: Printer, log_dir: Path, cfg: Path) -> None:
    """Ramp the challenger to half the traffic, if the guardrail passes on what the log holds now."""
    p(f"rendezvous ramp {log_dir} --model challenger --weight 0.5 --config {cfg} --window '2 seconds'", 2)
    with logstore.open(log_dir) as log:
        done = deploy.step(
            log, "ramp", "challenger", config=load_config(cfg), weight=0.5, window="2 seconds", bootstrap=500
        )
    assert done.report is not None
    for line in done.report.lines():
        p(line, 4)
    verdict = "refused by the guardrail (only the refusal is recorded)" if done.refused else "applied"
    p(f"  -> control offset {done.offset}: {verdict}; {done.state.describe()}", 2)


def _swap(p: Printer, log_dir: Path, cfg: Path) -> None:
    """Hot-swap the champion to its next version at a token in every inputs partition."""
    p(f"rendezvous swap {log_dir} --model champion --to {HOTFIX} --config {cfg}", 2)
    with logstore.open(log_dir) as log:
        done = swap.swap(log, fraud.CHAMPION[0], HOTFIX, config=load_config(cfg), why="hotfix: learns new_device")
    cut = ", ".join(f"{q}@{o}" for q, o in sorted(done.tokens.items()))
    p(f"  -> control offset {done.offset}, token {done.token} at inputs partition@offset {cut}", 2)


def _warm_up(url: str, log_dir: Path, sample: list[dict[str, Any]], timeout: float = 60.0) -> int:
    """Requests until each runner has scored one (so measured traffic meets warm processes)."""
    deadline = time.monotonic() + timeout
    log = logstore.open(log_dir)
    sent = 0
    while time.monotonic() < deadline:
        body = dict(sample[0], request_id=f"warm-up-{sent}")
        asyncio.run(send(url, [body], timeout=10))
        sent += 1
        if "scores" in log.topics():
            t = log.read("scores", columns=["model_id"])
            if {"champion", "challenger", "canary"} <= set(t.column("model_id").to_pylist()):
                return sent
        time.sleep(0.05)
    raise SystemExit("rendezvous.demo: the runners did not start scoring within a minute")


def _print_traffic(p: Printer, results: list[Result], answered: list[Result], secs: float, outcomes: int) -> None:
    lat = [r.answer["latency_ms"] for r in answered if r.answer]
    client = [r.client_ms for r in answered]
    reasons = Counter(r.answer["reason"] for r in answered if r.answer)
    models = Counter(r.answer["model"] for r in answered if r.answer)
    within = sum(1 for x in lat if x <= SLA_MS)
    p(f"{len(answered):,} of {len(results):,} answered in {secs:.1f} s; {outcomes:,} outcomes recorded", 2)
    p(f"answers within the {SLA_MS} ms SLA: {within:,} ({100 * within / max(1, len(lat)):.2f}%)", 2)
    p.table(
        ["latency", "p50 ms", "p99 ms", "max ms"],
        [
            ["service", percentile(lat, 0.5), percentile(lat, 0.99), max(lat, default=None)],
            ["client", percentile(client, 0.5), percentile(client, 0.99), max(client, default=None)],
        ],
    )
    p("served by  " + "  ".join(f"{m} {100 * k / len(answered):.1f}%" for m, k in models.most_common()), 2)
    p("reasons    " + "  ".join(f"{m} {100 * k / len(answered):.1f}%" for m, k in reasons.most_common()), 2)


def check(p: Printer, log: Any, answered: list[Result], config_path: Path) -> None:
    """Step 3: answers against records, and the rendezvous recomputed from the recorded arrivals."""
    p.section(3, "What was served is what was recorded, and it replays")
    decisions = {d["request_id"]: d for d in log.read("decisions").to_pylist(maps_as_pydicts="strict")}
    inputs = set(log.read("inputs", columns=["request_id"]).column("request_id").to_pylist())
    same = 0
    for r in answered:
        a = r.answer or {}
        d = decisions.get(a.get("request_id", ""))
        if d is None or a["request_id"] not in inputs:
            continue
        model = "default" if a["model"] == "default" else f"{a['model']}:{a['model_version']}"
        same += (d["chosen_model"], d["reason"], d["score"]) == (model, a["reason"], a["score"])
    p(f"answers equal to their decision record (input archived first): {same:,} of {len(answered):,}", 2)
    plane = ControlPlane(log, load_config(config_path))
    plane.catch_up()
    rows = list(decisions.values())
    again = sum(plane.replay(d).chosen_model == d["chosen_model"] for d in rows)
    gens = Counter(d["control_generation"] for d in rows)
    p(
        f"rendezvous recomputed from the recorded arrivals, each under its control generation "
        f"({', '.join(f'gen {g}: {k:,}' for g, k in sorted(gens.items()))}): {again:,} of {len(rows):,} "
        "serve the same model",
        2,
    )
    cut = VersionCut.read(log)
    where = {
        r["request_id"]: (r["_partition"], r["_offset"])
        for r in log.read("inputs", columns=["request_id", "_partition", "_offset"]).to_pylist()
    }
    served = [d for d in rows if d["chosen_model"].startswith(f"{fraud.CHAMPION[0]}:") and d["request_id"] in where]
    same_version = sum(
        (cut.version(fraud.CHAMPION[0], *where[d["request_id"]]) or fraud.CHAMPION[1])
        == d["chosen_model"].split(":")[1]
        for d in served
    )
    versions = Counter(d["chosen_model"] for d in served)
    p(
        f"champion answers served by the version the swap token's cut gives: {same_version:,} of {len(served):,} "
        f"({', '.join(f'{m} {k:,}' for m, k in sorted(versions.items()))})",
        2,
    )


def replay_and_evaluate(p: Printer, log: Any, out: Path) -> None:
    """Step 4 and 5: the challenger replayed offline against its live shadow scores; evaluation; status."""
    import replay.report

    p.section(4, "Replay: the challenger offline, against what it said live as a shadow")
    t = time.perf_counter()
    run = replay.run(log, inputs="inputs", outcomes="outcomes", models=[Challenger()], output=REPLAYED, progress=False)
    live = {
        r["request_id"]: r["score"]
        for r in log.read("scores", columns=["request_id", "model_id", "score"]).to_pylist()
        if r["model_id"] == "challenger"
    }
    offline = {r["request_id"]: r["score"] for r in run.scores().to_pylist()}
    equal = sum(1 for k, v in live.items() if k in offline and abs(offline[k] - v) <= 1e-12)
    p(f"run {run.id} {run.status}: {len(offline):,} scores in {time.perf_counter() - t:.1f} s", 2)
    p(f"live shadow scores equal to the replayed ones: {equal:,} of {len(live):,}", 2)

    p.section(5, "Evaluation of what was served, with the outcomes (replay.evaluate)")
    t = time.perf_counter()
    ev = replay.evaluate(
        log,
        scores=["scores"],
        outcomes="outcomes",
        inputs="inputs",
        champion=fraud.CHAMPION[0],
        canary=fraud.CANARY[0],
        window="5 seconds",
        bootstrap=200,
    )
    p(replay.report.summary(ev), 2)
    cf = replay.counterfactual(log, config=out / "rendezvous.toml", sla_ms=50)
    p("Counterfactual: the same arrivals under a 50 ms SLA (replay.counterfactual)", 2)
    p(cf.to_text(changes=3), 4)
    (out / "always-challenger.toml").write_text(ALWAYS_CHALLENGER)
    value = evaluate_policy(log, load_config(out / "always-challenger.toml"), reward="reward", intervals=True)
    logged = evaluate_policy(log, load_config(out / "rendezvous.toml"), reward="reward", intervals=True)
    p("Off-policy value (reward 1 - squared error of the answer served; IPW, SNIPW, DR, 95% intervals):", 2)
    for name, res in (("as served (generation 0 schedule)", logged), ("always the challenger first", value)):
        p(f"{name}: {res!r}", 4)
    ope = {"rendezvous.toml": logged, "always-challenger.toml": value}
    path = replay.report.write_html(
        ev, out / "report.html", deployment=deployment_events(log), counterfactual=cf, ope=ope
    )
    p(f"({time.perf_counter() - t:.1f} s)  HTML report: {path}", 2)

    p.section(6, "rendezvous status (from the log only)")
    p(status(log, window=400).format(), 2)


def main(argv: Sequence[str] | None = None, out: Any = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rendezvous.demo",
        description="Run the rendezvous live on loopback (front door, champion, shadow challenger, canary), "
        "send traffic and outcomes, then check, replay and evaluate what was served.",
        epilog="example:\n  python -m rendezvous.demo --out demo-output/live --requests 2000 --rate 100",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", default="demo-output/live", help="output directory (default %(default)s)")
    parser.add_argument("--requests", type=int, default=2000, help="payments to send (default %(default)s)")
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:  # the demo ends in the HTML report: say what to install before doing any work
        from replay.report_plots import require

        require()
    except ImportError as e:
        print(f"python -m rendezvous.demo: {e}", file=sys.stderr)
        return 2
    if args.requests < 1 or args.rate <= 0:
        parser.error("--requests must be at least 1 and --rate positive")
    p = Printer(out)
    began = time.perf_counter()
    outdir = Path(args.out)
    log_dir = prepare_out(outdir)
    title = "rendezvous live demo: serve within the SLA, record everything, replay it"
    p(f"{title}\n{'=' * len(title)}")
    answered = run_live(p, outdir, log_dir, args.requests, args.rate, args.seed)
    with logstore.open(log_dir) as log:
        check(p, log, answered, outdir / "rendezvous.toml")
        replay_and_evaluate(p, log, outdir)
    p(
        f"\nDone in {time.perf_counter() - began:.0f} s.  log {log_dir}\n"
        f"Next:\n  rendezvous status {log_dir}\n  logstore sql {log_dir} "
        '"SELECT reason, count(*) FROM decisions GROUP BY 1"'
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
