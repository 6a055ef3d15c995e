"""The front door: an HTTP service that archives each request, waits for scores, decides, answers.

aiohttp, not an ASGI app under uvicorn: one well-kept asyncio library gives the server and the
client (tests, the demo and the benchmark talk real HTTP to a real server on loopback), and the
service owns its event loop, which its one tailer of ``scores`` and its commits share.

For each ``POST /v1/score`` (``{"request_id": optional, "features": {name: number}, ...}``):

1. a mailbox for the request id is opened (`mailbox.py`), then the input is appended to ``inputs``
   (``raw`` = the body exactly as received, ``source = "rendezvous"``) and committed: no model can
   see a request before it is archived (the decoy's job), and no score of it can go unseen;
2. the one tailer of ``scores`` (started at their end offsets) delivers each score to its mailbox;
   the request sleeps until min(next arrival, `Policy.next_check_ms`) and asks `Policy.decide`
   again, which always decides by the hard deadline H = SLA - the overhead allowance;
3. the ``decision`` (candidates, arrivals, failed, chosen, reason, propensities, policy version,
   seed, SLA, deadline, overhead, decided_ms, served score or default answer) is appended and
   committed, and only then is the answer sent.

So an answered request's input and decision are in the log with the configured durability (`flush`:
they survive a crash of the service; `fsync`: a power cut); a request in flight at a crash may be
lost, never an answered one. ``--decoy-only`` archives and answers the default at once.
``inputs`` and ``scores`` are topics of the log, or of Kafka (`transport.py`, `kafka_transport.py`:
an input acknowledged by Kafka is archived, and the bridge records both topics into the log).

The overhead allowance (`Allowance`) is the service's own time past the moment a decision was due
(wake-up lag, deciding, the decision's commit, sending): a high quantile of recent requests, unless
the config fixes ``overhead_ms``. Per interval (``metrics_interval_s``) `metric` records go to
``metrics`` (`metrics.py`); with a sampling selector, outcomes feed it (`feedback.py`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import socket
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from aiohttp import web

from . import heap
from .commits import DEFAULT_MODE, Committer
from .config import Config
from .control import ControlPlane, now_us
from .feedback import Feedback
from .mailbox import DuplicateRequestError, Mailbox, Mailboxes
from .metrics import Prometheus, Window
from .policy import Choice, Policy
from .selection import seed_of
from .transport import InputsSink, LogTransport, Transport

log = logging.getLogger("rendezvous")

MAX_BODY = 1024 * 1024
MAX_REQUEST_ID = 200
DEFAULT_KEY = "default"


class RequestError(ValueError):
    """A request the service refuses (400), with the reason."""


def parse_score_request(body: bytes) -> tuple[str | None, dict[str, float], str]:
    """(request_id or None, features, raw text) of a score request body; RequestError if malformed."""
    try:
        raw = body.decode("utf-8")
        doc = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as e:
        raise RequestError(f"the body is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise RequestError("the body must be a JSON object with a 'features' object")
    rid = doc.get("request_id")
    if rid is not None and (not isinstance(rid, str) or not 0 < len(rid) <= MAX_REQUEST_ID):
        raise RequestError(f"request_id must be a string of 1-{MAX_REQUEST_ID} characters, found {rid!r}")
    feats = doc.get("features")
    if not isinstance(feats, dict):
        raise RequestError("'features' must be an object of name: number")
    features: dict[str, float] = {}
    for k, v in feats.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise RequestError(f"feature {k!r} must be a finite number, found {v!r}")
        features[k] = float(v)
    return rid, features, raw


def parse_outcome(body: bytes) -> dict[str, Any]:
    """An `outcome` record's fields (request_id, label, reward) from a body; RequestError if malformed."""
    try:
        doc = json.loads(body)
    except ValueError as e:
        raise RequestError(f"the body is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise RequestError("the body must be a JSON object")
    rid = doc.get("request_id")
    if not isinstance(rid, str) or not 0 < len(rid) <= MAX_REQUEST_ID:
        raise RequestError(f"request_id must be a string of 1-{MAX_REQUEST_ID} characters, found {rid!r}")
    out: dict[str, Any] = {"request_id": rid, "label": None, "reward": None}
    for k in ("label", "reward"):
        v = doc.get(k)
        if v is None:
            continue
        if isinstance(v, bool):
            v = float(v)
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            raise RequestError(f"{k} must be a finite number, found {v!r}")
        out[k] = float(v)
    if out["label"] is None and out["reward"] is None:
        raise RequestError("an outcome needs 'label' or 'reward'")
    src = doc.get("source")
    out["source"] = src if isinstance(src, str) else "rendezvous"
    return out


class Allowance:
    """The overhead allowance in ms: fixed, or a high quantile of the measured overheads.

    Measured: the largest of the last `window` overheads, times `margin`, plus `pad_ms`, within
    [`floor_ms`, SLA/2]: the SLA is the promise, so the allowance covers the worst recent case,
    not a typical one. Until `warmup` requests were measured: a fifth of the SLA (at least
    5 ms, at most a quarter), since a service's first commits to each partition are its slowest
    (segment files opened and created) and its first answers must keep the SLA too.
    """

    def __init__(
        self,
        sla_ms: float,
        fixed_ms: float | None = None,
        *,
        initial_ms: float | None = None,
        window: int = 1000,
        warmup: int = 50,
        margin: float = 1.25,
        pad_ms: float = 1.0,
        floor_ms: float = 1.0,
    ) -> None:
        self.fixed = fixed_ms
        self.ceiling = sla_ms / 2
        self._samples: deque[float] = deque(maxlen=window)
        self.warmup = warmup
        self.margin, self.pad, self.floor = margin, pad_ms, floor_ms
        if initial_ms is None:
            initial_ms = min(sla_ms / 4, max(5.0, sla_ms / 5))
        self._value = fixed_ms if fixed_ms is not None else min(initial_ms, self.ceiling)
        self._since = 0

    @property
    def ms(self) -> float:
        return self._value

    def observe(self, overhead_ms: float) -> None:
        if self.fixed is not None:
            return
        self._samples.append(overhead_ms)
        self._since += 1
        if len(self._samples) >= self.warmup and self._since >= 32:  # recomputed every 32 requests
            self._since = 0
            worst = max(self._samples)
            self._value = min(self.ceiling, max(self.floor, worst * self.margin + self.pad))


class Service:
    """The rendezvous front door over one log (see the module docstring). Start, serve, stop."""

    def __init__(
        self,
        log: Any,
        config: Config,
        *,
        decoy_only: bool = False,
        commit_mode: str | None = None,
        name: str | None = None,
        clock: Callable[[], datetime] | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.log = log
        self.transport: Transport = transport or LogTransport(log)  # inputs and scores: the log, or Kafka
        self.config = config
        self.decoy_only = decoy_only
        self.commit_mode = commit_mode or DEFAULT_MODE
        self.name = name or socket.gethostname()
        self._now = clock or (lambda: datetime.now(UTC))
        self.policy = Policy(config)
        self.control = ControlPlane(log, config, self.policy)  # deployment steps: rendezvous/control.py
        self.allowance = Allowance(config.sla_ms, config.overhead_ms)
        self.mailboxes = Mailboxes(served=lambda mid: self.control.state.serves(mid))  # a ramped shadow serves
        self.prometheus = Prometheus()
        self.window = Window()
        sampling = self.policy.selector.sampling
        self.feedback = Feedback(self.policy.selector, config.selection.reward) if sampling else None
        self.inputs: InputsSink  # the transport's archive of requests, from start()
        self._committers: dict[str, Committer] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._readers: list[Any] = []
        self._stopping: asyncio.Event | None = None
        self.started = False
        self.decided = 0

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Create missing topics, open the writers, start the tailers at the end of the log."""
        if self.started:
            return
        self._stopping = asyncio.Event()
        t, durability = self.config.topics, self.config.durability
        self.transport.prepare_service(t)
        self.inputs = self.transport.inputs_sink(t, durability, self.commit_mode)
        for topic in (t.decisions, t.outcomes, t.metrics):
            w = self.log.writer(topic, durability=durability, linger_ms=None)
            self._committers[topic] = Committer(w, self.commit_mode)
        await asyncio.to_thread(self._warm_up)
        for what, coro in self.transport.background(t, durability):  # Kafka: the recording bridges
            self._spawn(coro, what)
        if not self.decoy_only:
            scores = self.transport.scores_source(t.scores)
            self._spawn(self._tail(scores, self.mailboxes.deliver_batch), "scores")
            self._spawn(self._tail(self.control.start(), self.control.apply), "control")
        if self.feedback is not None:
            # rebuild the posterior before serving: the last decisions, the outcomes since the oldest
            end = await asyncio.to_thread(self._rebuild, self.feedback)
            outcomes = self.log.reader(
                t.outcomes, start=end, follow=True, columns=["request_id", self.config.selection.reward]
            )
            self._spawn(self._tail(outcomes, self.feedback.apply), "outcomes")
            self._spawn(self._snapshot_loop(), "snapshots")
        self._spawn(self._metrics_loop(), "metrics")
        self.prometheus.deadline.set(self.deadline_ms())
        self.started = True

    def _warm_up(self) -> None:
        """Convert a sample input and decision to Arrow, as their commits will: the first conversion
        loads code lazily (hundreds of ms), which must not land on the first request's deadline."""
        t, now = self.config.topics, self._now()
        inp = {"request_id": "", "event_time": now, "features": {"x": 0.0}, "raw": "{}", "source": ""}
        dec = {"request_id": "", "event_time": now, "candidates": [], "chosen_model": "", "reason": "default"}
        dec.update(propensity=1.0, deadline_ms=0.0, arrivals={"m": 0.0}, failed=[], propensities={"m": 1.0})
        self.inputs.warm_up(inp)
        schema = self.log.arrow_schema(t.decisions)
        pa.RecordBatch.from_pylist([{f: dec.get(f) for f in schema.names}], schema=schema)

    def _rebuild(self, feedback: Feedback) -> dict[int, int]:
        """Feed the outcomes of the log's recent decisions; returns where the outcomes tail starts."""
        t = self.config.topics
        since = feedback.load_recent(self.log, t.decisions)
        end: dict[int, int] = self.log.end_offsets(t.outcomes)
        if since is not None:
            cols = ["request_id", self.config.selection.reward]
            for batch in self.log.reader(t.outcomes, start=since, end=end, columns=cols):
                feedback.apply(batch)
            feedback.snapshot()
        return end

    def _spawn(self, coro: Any, what: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"rendezvous-{what}")
        task.add_done_callback(_log_failure)
        self._tasks.append(task)

    async def _tail(self, reader: Any, handle: Callable[[Any], int]) -> None:
        self._readers.append(reader)
        async for batch in reader:
            if batch.num_rows:
                handle(batch)

    async def stop(self) -> None:
        """Stop the tailers, append the last metrics, close the writers (flushing them)."""
        if not self.started:
            return
        self.started = False
        for r in self._readers:
            # the tail's next wait (at most its poll interval) then ends the iteration: a worker
            # thread blocked in the reader is never left behind
            r.follow = False
        await self.transport.stop()  # Kafka: the bridges record what was archived and seen, then stop
        assert self._stopping is not None
        self._stopping.set()
        await asyncio.wait(self._tasks, timeout=5)
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        self.inputs.close()
        for c in self._committers.values():
            c.close()
        self.transport.close()

    async def _metrics_loop(self) -> None:
        assert self._stopping is not None
        interval = self.config.metrics_interval_s
        while self.started:
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=interval)
            except TimeoutError:
                pass
            await self.flush_metrics()

    async def _snapshot_loop(self) -> None:
        assert self.feedback is not None and self._stopping is not None
        interval = self.config.selection.snapshot_interval_s
        while self.started:
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=interval)
            except TimeoutError:
                pass
            self.feedback.snapshot()

    async def flush_metrics(self) -> int:
        """Append the current interval's `metric` records; returns how many."""
        window, self.window = self.window, Window()
        records = window.records(self._now(), self.name)
        if records:
            await self._committers[self.config.topics.metrics].commit(records)
        return len(records)

    # --- the rendezvous ----------------------------------------------------------------------
    def deadline_ms(self) -> float:
        return float(self.policy.deadline_ms(self.allowance.ms))

    async def score(self, body: bytes, t0: float | None = None) -> tuple[dict[str, Any], Callable[[float], None]]:
        """Archive, wait, decide, record one request; returns the answer and a callback to call
        with the time (monotonic) the answer was sent. Raises RequestError for a bad body."""
        t0 = time.monotonic() if t0 is None else t0
        self.prometheus.requests.inc()
        rid, features, raw = parse_score_request(body)
        request_id = rid if rid is not None else uuid.uuid4().hex
        mb = self.mailboxes.open(request_id, t0)
        self.prometheus.in_flight.inc()
        try:
            arrived = self._now()
            record = {
                "request_id": request_id,
                "event_time": arrived,
                "features": features,
                "raw": raw,
                "enrichment": None,
                "source": "rendezvous",
            }
            since = now_us()  # before the input's commit: see rendezvous/control.py for the rule
            await self.inputs.append(record)  # committed to the log, or acknowledged by Kafka
            route = self.inputs.route(self.control, request_id, since)
            archived = mb.elapsed_ms()
            deadline = self.deadline_ms()
            choice = route.finish(await self._decide(mb, deadline, route.policy))
        finally:
            self.mailboxes.close(mb)
            self.prometheus.in_flight.dec()
        woke = mb.elapsed_ms()
        decision, answer = self._records(mb, choice)
        decision["control_generation"] = route.generation
        await self._committers[self.config.topics.decisions].commit([decision])
        if self.feedback is not None:
            self.feedback.served(request_id, choice.chosen)
        latency = mb.elapsed_ms()
        answer["latency_ms"] = round(latency, 3)
        self.decided += 1

        def sent(at: float) -> None:
            total = mb.elapsed_ms(at)
            overhead = max(0.0, total - choice.decided_ms)
            self.allowance.observe(overhead)
            p = self.prometheus
            p.phase.labels("archive").observe(archived / 1000)
            p.phase.labels("wake").observe(max(0.0, woke - choice.decided_ms) / 1000)
            p.phase.labels("record").observe((latency - woke) / 1000)
            p.phase.labels("send").observe((total - latency) / 1000)
            p.answers.labels(decision["chosen_model"], choice.reason).inc()
            p.latency.observe(total / 1000)
            p.overhead.observe(overhead / 1000)
            for s in mb.scores.values():
                p.arrival.labels(s.key).observe(s.arrival_ms / 1000)
            p.deadline.set(self.deadline_ms())
            arrivals = {k: (s.arrival_ms, s.score, s.ok) for k, s in mb.scores.items()}
            self.window.observe(decision["chosen_model"], arrivals, total, overhead)

        return answer, sent

    async def _decide(self, mb: Mailbox, deadline: float, policy: Policy | None = None) -> Choice:
        policy = policy or self.policy
        if self.decoy_only:
            now = mb.elapsed_ms()
            v = policy.selector.version
            rid = mb.request_id
            return Choice(
                None, "default", 1.0, {DEFAULT_KEY: 1.0}, (), now, deadline, seed_of(rid, v), v, policy.selector.policy
            )
        while True:
            now = mb.elapsed_ms()
            choice = policy.decide(mb.request_id, mb.arrivals, mb.failed, now, deadline)
            if choice is not None:
                return choice
            until = min(policy.next_check_ms(mb.arrivals, mb.failed, now, deadline), deadline)
            await mb.wait(max(0.0, until - now) / 1000)

    def _records(self, mb: Mailbox, choice: Choice) -> tuple[dict[str, Any], dict[str, Any]]:
        """The `decision` record and the answer of a decided request."""
        chosen = choice.chosen
        default = self.config.default
        score: float | None
        if chosen is None:
            d = default.get("score")
            score = float(d) if isinstance(d, (int, float)) and not isinstance(d, bool) else None
            model, version = DEFAULT_KEY, None
        else:
            s = mb.scores.get(chosen)
            score = s.score if s is not None else None
            model, _, version = chosen.partition(":")
        decision = {
            "request_id": mb.request_id,
            "event_time": self._now(),
            **choice.record_fields(),
            "sla_ms": float(self.config.sla_ms),
            "overhead_ms": float(self.allowance.ms),
            "score": score,
            "answer": json.dumps(dict(default), sort_keys=True) if chosen is None else None,
        }
        answer: dict[str, Any] = {
            "request_id": mb.request_id,
            "model": model,
            "model_version": version,
            "score": score,
            "reason": choice.reason,
            "propensity": float(choice.propensity),
        }
        if chosen is None:
            answer.update({k: v for k, v in default.items() if k not in answer})
        return decision, answer

    async def outcome(self, body: bytes) -> dict[str, Any]:
        """Append one outcome (delayed feedback); returns what was recorded."""
        rec = parse_outcome(body)
        rec["event_time"] = self._now()
        await self._committers[self.config.topics.outcomes].commit([rec])
        self.prometheus.outcomes.inc()
        return {"request_id": rec["request_id"], "recorded": True}

    # --- HTTP --------------------------------------------------------------------------------
    def app(self) -> web.Application:
        """The aiohttp application; starting it starts the service, cleaning up stops it."""
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post("/v1/score", self._http_score)
        app.router.add_post("/v1/outcome", self._http_outcome)
        app.router.add_get("/healthz", self._http_health)
        app.router.add_get("/metrics", self._http_metrics)

        async def on_startup(_: web.Application) -> None:
            await self.start()

        async def on_cleanup(_: web.Application) -> None:
            await self.stop()

        app.on_startup.append(on_startup)
        app.on_cleanup.append(on_cleanup)
        return app

    async def _http_score(self, request: web.Request) -> web.StreamResponse:
        t0 = time.monotonic()
        body = await request.read()
        try:
            answer, sent = await self.score(body, t0)
        except RequestError as e:
            return self._refuse(400, str(e))
        except DuplicateRequestError as e:
            return self._refuse(409, str(e))
        resp = web.Response(body=json.dumps(answer).encode(), content_type="application/json")
        await resp.prepare(request)
        await resp.write_eof()
        sent(time.monotonic())
        return resp

    async def _http_outcome(self, request: web.Request) -> web.Response:
        try:
            return web.json_response(await self.outcome(await request.read()))
        except RequestError as e:
            return self._refuse(400, str(e))

    def _refuse(self, status: int, message: str) -> web.Response:
        self.prometheus.rejected.labels(str(status)).inc()
        return web.json_response({"error": message}, status=status)

    async def _http_health(self, request: web.Request) -> web.Response:
        ok = self.started and all(not t.done() for t in self._tasks)
        body = {
            "status": "ok" if ok else "failing",
            "decoy_only": self.decoy_only,
            "in_flight": len(self.mailboxes),
            "decided": self.decided,
            "sla_ms": self.config.sla_ms,
            "deadline_ms": round(self.deadline_ms(), 3),
            "overhead_ms": round(self.allowance.ms, 3),
            "commit_mode": self.commit_mode,
        }
        return web.json_response(body, status=200 if ok else 503)

    async def _http_metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.prometheus.render(), headers={"Content-Type": self.prometheus.content_type})


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("rendezvous: %s stopped: %r", task.get_name(), task.exception())


async def serve(
    log: Any,
    config: Config,
    *,
    host: str = "127.0.0.1",
    port: int = 8700,
    decoy_only: bool = False,
    commit_mode: str | None = None,
    ready: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
    switch_interval: float | None = 0.0005,
    transport: Transport | None = None,
) -> None:
    """Serve until `stop` is set (or SIGINT/SIGTERM): in-flight requests are answered, then the
    writers are closed. `ready` gets the URL once the service is listening (port 0: a free one)."""
    import signal

    if switch_interval is not None:
        # the loop thread waits for the GIL behind the tailer's and committer's threads for up to
        # this long (CPython's default, 5 ms, is a tenth of a 50 ms SLA)
        sys.setswitchinterval(switch_interval)
    service = Service(log, config, decoy_only=decoy_only, commit_mode=commit_mode, transport=transport)
    runner = web.AppRunner(service.app(), access_log=None, handle_signals=False, shutdown_timeout=5.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        bound = _port_of(runner.addresses, port)
        service.name = f"{socket.gethostname()}:{bound}"
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # not the main thread, or no signals here
                pass
        heap.settle()  # startup's objects out of the collector's walks (rendezvous/heap.py)
        if ready is not None:
            ready(f"http://{host}:{bound}")
        await stop.wait()
    finally:
        await runner.cleanup()


def _port_of(addresses: list[Any], asked: int) -> int:
    for a in addresses:
        if isinstance(a, tuple) and len(a) >= 2:
            return int(a[1])
    return asked


def describe(config: Config, decoy_only: bool) -> str:
    """One line saying what a service with `config` does (for the CLI's start message)."""
    steps = ", ".join(f"{s.model} after {s.after_ms:g} ms" for s in config.schedule)
    what = "decoy only (archive, answer the default)" if decoy_only else f"schedule [{steps}]"
    return f"SLA {config.sla_ms:g} ms, {what}, selection {config.selection.policy}, durability {config.durability}"


def answer_of(decision: Mapping[str, Any]) -> tuple[str, str | None]:
    """(model, model_version) of a decision record's chosen model, as the answer names them."""
    chosen = str(decision["chosen_model"])
    if chosen == DEFAULT_KEY:
        return DEFAULT_KEY, None
    model, _, version = chosen.partition(":")
    return model, version
