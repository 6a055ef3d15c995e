"""Deployment as data: the ``control`` topic, the fold of its records into a deployment state, and
the service's view of it (docs/architecture.md, "Deployment as a data op").

A control record (``schemas/control.avsc``) is one step: ``deploy`` (a model version joins, as
challenger, canary or shadow), ``ramp`` (it may serve a share of requests), ``promote`` (it becomes
the champion), ``retire`` (it leaves), ``refusal`` (a step the guardrail refused; it changes
nothing) and ``swap`` (the model changes version at its hot-swap tokens, `rendezvous.swap`: its
schedule entry then matches any of its versions, the tokens' cut deciding which). The topic has one
partition, so its records are in one order, and that order decides.

The state (`ControlState`, pure) starts from the service's config (generation 0: its schedule,
entry 0 the champion, the others challengers) and every record that applies adds one to its
``generation``; a record that does not apply (a ramp of an unknown model) is skipped, with the
reason. The schedule of a state is its served models (champion, challengers) in order, the i-th at
the config's i-th ``after_ms`` (the last one for any further model): the config keeps the timing,
control records the order. Shadows and canaries are scored, never scheduled.

- deploy: a new model goes at the end (role challenger unless given); a known one gets the new
  version (and role, if given).
- ramp W: the model (a challenger from then on) is placed first for the requests whose
  `ramp_draw` (a hash of request id and model id, uniform in [0, 1)) is below W, and left out of the
  schedule of the others. The draw ignores the generation, so raising W only adds requests. A
  decision's ``propensity`` is the probability of its branch (W or 1 - W per ramped model) times
  the policy's own; its ``propensities`` stay the policy's (what a redraw uses).
- promote: the model goes first, as champion; the old champion becomes the challenger right after
  it (the fallback). retire: the model leaves; a retired champion's successor is the next one.

The service (`ControlPlane`) decides a request under the fold of every control record appended
strictly before the request's input (by ``_append_time``). That is exact, not best effort: the
service notes the clock before the input's commit and, after it, snapshots ``control``; a writer
stamps the append time under its partition lock and a snapshot waits for that lock, so a record
stamped before the input is visible then. Only when a record was stamped after that noted time
(a request in flight while it was appended) is the input's own append time read back. One clock
is assumed (one machine). Each decision names ``control_generation``, from which `replay`
rebuilds it.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

import logstore
from logstore.timeutil import now_us, to_datetime

from .config import Config, ConfigError, Step
from .policy import Choice, Policy
from .topics import upgrade_schema

__all__ = [
    "CONTROL_TOPIC",
    "KINDS",
    "ROLES",
    "ControlError",
    "ControlPlane",
    "ControlState",
    "Deployed",
    "Route",
    "ensure_control",
    "fold",
    "make_record",
    "now_us",
    "ramp_draw",
    "read_records",
]

log = logging.getLogger("rendezvous")

CONTROL_TOPIC = "control"
SCHEMA = "control"
KINDS = ("deploy", "ramp", "promote", "retire", "swap", "refusal")
ROLES = ("champion", "challenger", "canary", "shadow")
SERVED = ("champion", "challenger")
_UNIT = 1 << 53


class ControlError(ValueError):
    """A control step that does not apply to the state (the message names the model and why)."""


def ramp_draw(request_id: str, model_id: str) -> float:
    """The request's draw for a ramped model, uniform in [0, 1): 53 bits of BLAKE2b."""
    h = hashlib.blake2b(f"{request_id}\x1f{model_id}".encode(), digest_size=8, person=b"rendezvous-ramp")
    return (int.from_bytes(h.digest(), "big") >> 11) / _UNIT


@dataclass(frozen=True, slots=True)
class Deployed:
    """One model of the deployment: its version (None: any), role and ramp weight (None: not ramped)."""

    model_id: str
    version: str | None
    role: str
    weight: float | None = None

    @property
    def key(self) -> str:
        """The schedule entry: ``"m3"`` (any version) or ``"m3:1.0"``."""
        return self.model_id if self.version is None else f"{self.model_id}:{self.version}"


@dataclass(frozen=True)
class ControlState:
    """The deployment after a prefix of the control topic (see the module docstring).

    `end` is the offset after the last record folded (applied or skipped), `append_us` the append
    time of the last one applied (None: generation 0, or a state built without the log)."""

    base: Config | None
    slots: tuple[float, ...]
    models: tuple[Deployed, ...] = ()
    generation: int = 0
    end: int = 0
    append_us: int | None = None
    _steps: tuple[Step, ...] = field(default=(), repr=False, compare=False)

    @classmethod
    def initial(cls, config: Config | None) -> ControlState:
        """Generation 0: the config's schedule (entry 0 the champion); None: nothing deployed."""
        schedule = config.schedule if config is not None else ()
        models = tuple(
            Deployed(s.model_id, s.version, "champion" if i == 0 else "challenger") for i, s in enumerate(schedule)
        )
        slots = tuple(s.after_ms for s in schedule) or (0.0,)
        return cls(config, slots, models).with_models(models, 0)

    def with_models(self, models: tuple[Deployed, ...], generation: int) -> ControlState:
        """This state with `models` as generation `generation` (ControlError if the service's
        config refuses the schedule they make)."""
        steps = self._schedule([d for d in models if d.role in SERVED])
        if self.base is not None:
            try:
                replace(self.base, schedule=steps)
            except ConfigError as e:
                raise ControlError(f"the schedule {[s.model for s in steps]} is refused: {e}") from None
        return replace(self, models=models, generation=generation, _steps=steps)

    def _schedule(self, order: Sequence[Deployed]) -> tuple[Step, ...]:
        last = len(self.slots) - 1
        return tuple(Step(d.key, self.slots[min(i, last)]) for i, d in enumerate(order))

    @property
    def schedule(self) -> tuple[Step, ...]:
        """The schedule of a request no ramp draw changes (every served model, in order)."""
        return self._steps

    def find(self, model_id: str) -> Deployed | None:
        return next((d for d in self.models if d.model_id == model_id), None)

    def serves(self, model_id: str) -> bool:
        """Whether `model_id` is one of the served models (champion or challenger, ramped or not)."""
        d = self.find(model_id)
        return d is not None and d.role in SERVED

    def role(self, role: str) -> Deployed | None:
        """The first model with `role` (the champion, the canary), None if none."""
        return next((d for d in self.models if d.role == role), None)

    @property
    def ramped(self) -> tuple[Deployed, ...]:
        return tuple(d for d in self.models if d.weight is not None and d.role in SERVED)

    def branch(self, request_id: str) -> tuple[tuple[Step, ...], float]:
        """The schedule of `request_id` under the ramps, and the probability of its branch."""
        ramped = self.ramped
        if not ramped:
            return self._steps, 1.0
        first: list[Deployed] = []
        p = 1.0
        for d in ramped:
            w = float(d.weight or 0.0)
            if ramp_draw(request_id, d.model_id) < w:
                first.append(d)
                p *= w
            else:
                p *= 1.0 - w
        rest = [d for d in self.models if d.role in SERVED and d.weight is None]
        return self._schedule(first + rest), p

    # ---- the fold ---------------------------------------------------------------------------

    def apply(self, record: Mapping[str, Any], offset: int | None = None, append_us: int | None = None) -> ControlState:
        """The state after `record` (applied: generation + 1); ControlError if it does not apply.
        `offset` and `append_us` say where it was read (default: right after this state)."""
        nxt = self._step(record)
        return replace(nxt, end=self.end + 1 if offset is None else offset + 1, append_us=append_us)

    def fold(self, record: Mapping[str, Any], offset: int, append_us: int | None) -> tuple[ControlState, str | None]:
        """(next state, None) if `record` applies, else (this state moved past it, the reason)."""
        try:
            return self.apply(record, offset, append_us), None
        except ControlError as e:
            return replace(self, end=offset + 1), str(e)

    def _step(self, r: Mapping[str, Any]) -> ControlState:
        kind, mid = r.get("kind"), r.get("model_id")
        if kind not in KINDS:
            raise ControlError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
        if not isinstance(mid, str) or not mid or ":" in mid:
            raise ControlError(f"{kind}: model_id must be a model id without ':', found {mid!r}")
        if kind == "refusal":
            raise ControlError(f"refusal of a {r.get('requested') or 'step'} of {mid}: changes nothing")
        cur = self.find(mid)
        models = list(self.models)
        gen = self.generation + 1
        if kind == "deploy":
            role, version = r.get("role"), r.get("version")
            if role not in (None, "challenger", "canary", "shadow"):
                raise ControlError(
                    f"deploy {mid}: role {role!r} (deploy as challenger, canary or shadow; promote a champion)"
                )
            if version is not None and (not isinstance(version, str) or not version or ":" in version):
                raise ControlError(f"deploy {mid}: version must be a non-empty string without ':', found {version!r}")
            if cur is None:
                models.append(Deployed(mid, version, role or "challenger"))
            else:
                if cur.role == "champion" and role is not None:
                    raise ControlError(
                        f"deploy {mid}: it is the champion; promote another model before changing its role"
                    )
                weight = cur.weight if (role or cur.role) in SERVED else None
                models[models.index(cur)] = Deployed(mid, version, role or cur.role, weight)
            return self.with_models(tuple(models), gen)
        if cur is None:
            known = ", ".join(d.key for d in self.models) or "none"
            raise ControlError(f"{kind} {mid}: not deployed (deployed: {known})")
        if kind == "swap":  # which version serves an input is its partition's token cut, not the schedule
            models[models.index(cur)] = Deployed(mid, None, cur.role, cur.weight)
            return self.with_models(tuple(models), gen)
        if kind == "ramp":
            w = r.get("weight")
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0.0 <= w <= 1.0:
                raise ControlError(f"ramp {mid}: weight must be a number in [0, 1], found {w!r}")
            if cur.role == "champion":
                raise ControlError(f"ramp {mid}: it is the champion (it serves every request no ramp takes)")
            models[models.index(cur)] = Deployed(mid, cur.version, "challenger", float(w))
            return self.with_models(tuple(models), gen)
        if kind == "promote":
            if cur.role == "champion":
                raise ControlError(f"promote {mid}: already the champion")
            old = self.role("champion")
            rest = [d for d in models if d is not cur and d is not old]
            head = [Deployed(mid, cur.version, "champion")]
            if old is not None:
                head.append(Deployed(old.model_id, old.version, "challenger"))
            return self.with_models(tuple(head + rest), gen)
        # retire
        models.remove(cur)
        if cur.role == "champion":
            nxt = next((d for d in models if d.role in SERVED), None)
            if nxt is not None:
                models[models.index(nxt)] = Deployed(nxt.model_id, nxt.version, "champion")
        return self.with_models(tuple(models), gen)

    def describe(self) -> str:
        """One line: the generation and every model with its role (and weight)."""
        parts = [f"{d.key} {d.role}" + (f" {d.weight:g}" if d.weight is not None else "") for d in self.models]
        return f"generation {self.generation}: " + (", ".join(parts) if parts else "nothing deployed")


def fold(config: Config | None, records: Iterable[Mapping[str, Any]]) -> ControlState:
    """The state after `records` (in log order, offsets from 0), skipped ones included."""
    state = ControlState.initial(config)
    for i, r in enumerate(records):
        state, _ = state.fold(r, i, r.get("_append_us"))
    return state


def make_record(
    kind: str,
    model_id: str,
    *,
    who: str,
    version: str | None = None,
    role: str | None = None,
    weight: float | None = None,
    why: str = "",
    forced: bool = False,
    guardrail: str | None = None,
    generation: int = 0,
    requested: str | None = None,
    event_time: datetime | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """A `control` record (every field of the schema)."""
    return {
        "kind": kind,
        "model_id": model_id,
        "version": version,
        "role": role,
        "weight": None if weight is None else float(weight),
        "who": who,
        "event_time": event_time or datetime.now(UTC),
        "why": why,
        "forced": bool(forced),
        "guardrail": guardrail,
        "generation": int(generation),
        "requested": requested,
        "token": token,
    }


def ensure_control(log: logstore.Log, topic: str = CONTROL_TOPIC) -> str:
    """Create the control topic (one partition, unkeyed) if missing; evolve an older schema."""
    log.create_topic(topic, schema=SCHEMA, partitions=1, exist_ok=True)
    upgrade_schema(log, topic, SCHEMA)
    return topic


def read_records(
    log: logstore.Log, start: int = 0, end: int | None = None, topic: str = CONTROL_TOPIC
) -> list[dict[str, Any]]:
    """Control records [start, end) as dicts, each with ``_offset`` and ``_append_us`` (int µs)."""
    if topic not in log.topics():
        return []
    stop = log.end_offsets(topic)[0] if end is None else end
    if stop <= start:
        return []
    return _rows(log.read(topic, start={0: start}, end={0: stop}))


def _rows(data: pa.Table | pa.RecordBatch) -> list[dict[str, Any]]:
    times = data.column("_append_time").cast(pa.int64()).to_pylist()
    rows: list[dict[str, Any]] = data.to_pylist()
    for row, t in zip(rows, times, strict=True):
        row["_append_us"] = int(t)
    return rows


@dataclass(frozen=True, slots=True)
class Route:
    """How one request is decided: the policy of its branch, the generation, the branch's probability."""

    policy: Policy
    generation: int
    branch_propensity: float = 1.0

    def finish(self, choice: Choice) -> Choice:
        """`choice` with its propensity times the branch's (the probability of what was logged)."""
        if self.branch_propensity == 1.0:
            return choice
        return replace(choice, propensity=choice.propensity * self.branch_propensity)


class ControlPlane:
    """The control topic as a service (or replay) sees it: every state of the fold, by generation
    and by append time, and the `Route` of each request (see the module docstring).

    Not thread-safe: the service uses it from its event loop (its tail and its requests)."""

    def __init__(self, log: Any, config: Config, policy: Policy | None = None, *, topic: str = CONTROL_TOPIC) -> None:
        self.log = log
        self.config = config
        self.topic = topic
        self.policy = policy if policy is not None else Policy(config)
        self.state = ControlState.initial(config)
        self.states: list[ControlState] = [self.state]  # states[g]: generation g
        self._times: list[int] = []  # _times[g - 1]: append time of the record that made generation g
        self.skipped: list[tuple[int, str]] = []  # (offset, reason) of records that changed nothing
        self.readbacks = 0  # requests whose input append time was read back
        self.started = False
        self._policies: dict[tuple[Step, ...], Policy] = {config.schedule: self.policy}

    # ---- reading the topic --------------------------------------------------------------------
    def start(self) -> Any:
        """Create the topic if missing, fold what it holds; returns a following reader from its end."""
        ensure_control(self.log, self.topic)
        self.catch_up()
        self.started = True
        return self.log.reader(self.topic, start={0: self.state.end}, follow=True)

    def catch_up(self) -> int:
        """Fold every record committed by now; returns how many were new."""
        if not self.started and self.topic not in self.log.topics():
            return 0
        end = self.log.end_offsets(self.topic)[0]
        if end <= self.state.end:
            return 0
        return self._fold(read_records(self.log, self.state.end, end, self.topic))

    def apply(self, batch: pa.RecordBatch) -> int:
        """Fold a tailed batch (records already folded are skipped); returns how many were new."""
        return self._fold(_rows(batch))

    def _fold(self, rows: Sequence[Mapping[str, Any]]) -> int:
        n = 0
        for row in rows:
            offset = int(row["_offset"])
            if offset < self.state.end:
                continue
            if offset > self.state.end:  # a batch from further on: fold the records between first
                n += self._fold(read_records(self.log, self.state.end, offset, self.topic))
            before = self.state.generation
            self.state, reason = self.state.fold(row, offset, int(row["_append_us"]))
            n += 1
            if reason is not None:
                self.skipped.append((offset, reason))
                continue
            assert self.state.generation == before + 1
            self.states.append(self.state)
            self._times.append(int(row["_append_us"]))
            log.info("rendezvous: control offset %d applied: %s", offset, self.state.describe())
        return n

    # ---- states ---------------------------------------------------------------------------------
    def at_generation(self, generation: int) -> ControlState:
        if not 0 <= generation < len(self.states):
            raise KeyError(f"control generation {generation} is unknown (generations 0..{len(self.states) - 1})")
        return self.states[generation]

    def at_time(self, append_us: int) -> ControlState:
        """The state of a record appended at `append_us`: the fold of the records appended before it."""
        return self.states[bisect.bisect_left(self._times, append_us)]

    def policy_for(self, steps: tuple[Step, ...]) -> Policy:
        """The policy of a schedule (one per schedule, sharing the service's selector)."""
        p = self._policies.get(steps)
        if p is None:
            p = Policy(replace(self.config, schedule=steps), self.policy.selector)
            if len(self._policies) < 4096:
                self._policies[steps] = p
        return p

    def route_of(self, state: ControlState, request_id: str) -> Route:
        steps, p = state.branch(request_id)
        return Route(self.policy_for(steps), state.generation, p)

    # ---- the service --------------------------------------------------------------------------
    def route(self, request_id: str, since_us: int, inputs: str | None = None) -> Route:
        """The route of a request whose input commit began at `since_us` (`now_us()`) and has
        returned: under the fold of the control records appended before the input."""
        if not self.started:
            return self.route_of(self.state, request_id)
        self.catch_up()
        if not self._times or self._times[-1] < since_us:
            return self.route_of(self.state, request_id)
        at = self._input_append_us(inputs or self.config.topics.inputs, request_id, since_us)
        return self.route_of(self.state if at is None else self.at_time(at), request_id)

    def _input_append_us(self, inputs: str, request_id: str, since_us: int) -> int | None:
        self.readbacks += 1
        table = self.log.read(inputs, start=to_datetime(since_us), columns=["request_id", "_append_time"])
        rids = table.column("request_id").to_pylist()
        times = table.column("_append_time").cast(pa.int64()).to_pylist()
        found = [t for r, t in zip(rids, times, strict=True) if r == request_id]
        if not found:  # cannot happen for a committed input; the latest state is the safe side
            log.warning("rendezvous: input of %r not found after %d: latest control state used", request_id, since_us)
            return None
        return int(max(found))

    # ---- replay -------------------------------------------------------------------------------
    def replay(self, decision: Mapping[str, Any], *, redraw: bool = False) -> Choice:
        """The `Choice` a recorded decision was (or, `redraw=True`, would now be) taken with: its
        control generation's branch for its request id, then `Policy.replay_record`."""
        state = self.at_generation(int(decision.get("control_generation") or 0))
        route = self.route_of(state, str(decision["request_id"]))
        return route.finish(route.policy.replay_record(decision, redraw=redraw))
