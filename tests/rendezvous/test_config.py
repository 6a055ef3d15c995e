"""The rendezvous config: the issue's TOML parses, every refusal names its key and reason."""

from __future__ import annotations

import tomllib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rendezvous.config import Config, ConfigError, Prior, Selection, Step, Topics, load_config, parse_config

EXAMPLE = """
sla_ms = 50                       # an answer is always given within this
default = { score = 0.0 }         # the answer when no model answered in time
[[schedule]]                      # "use m3; after 20 ms use m2 if available; after 35 ms m1"
model = "m3"
after_ms = 0
[[schedule]]
model = "m2"
after_ms = 20
[[schedule]]
model = "m1"
after_ms = 35
[selection]                       # optional: choose among the models eligible at a moment
policy = "thompson"               # "schedule" (default) | "thompson" | "epsilon"
reward = "label"                  # from the outcomes topic, joined by request id
"""


def test_the_example_config_parses(tmp_path):
    """The config as the docs show it gives the schedule, the default and Thompson on labels."""
    path = tmp_path / "rendezvous.toml"
    path.write_text(EXAMPLE)
    c = load_config(path)
    assert c.sla_ms == 50.0 and isinstance(c.sla_ms, float)
    assert dict(c.default) == {"score": 0.0}
    assert c.schedule == (Step("m3", 0.0), Step("m2", 20.0), Step("m1", 35.0))
    assert c.selection == Selection(policy="thompson", reward="label")
    assert c.selection.resolved_family == "beta"
    assert c.topics == Topics() and c.durability == "flush" and c.overhead_ms is None
    assert c.metrics_interval_s == 60.0


def test_every_option_parses():
    """Every key the config knows, set to a non-default value, arrives in the Config."""
    doc = tomllib.loads(
        EXAMPLE.replace('policy = "thompson"', 'policy = "epsilon"\nepsilon = 0.2\nmin_propensity = 0.01\n').replace(
            'reward = "label"', 'reward = "reward"\nsnapshot_interval_s = 2\nprior = { mean = 1, sd = 3 }'
        )
        + '[topics]\ninputs = "in"\nmetrics = "m"\n'
    )
    doc.update(durability="fsync", overhead_ms=1.5, metrics_interval_s=5)
    c = parse_config(doc)
    assert c.selection.policy == "epsilon" and c.selection.epsilon == 0.2 and c.selection.min_propensity == 0.01
    assert c.selection.prior == Prior(mean=1, sd=3) and c.selection.resolved_family == "gaussian"
    assert c.topics.inputs == "in" and c.topics.metrics == "m" and c.topics.scores == "scores"
    assert (c.durability, c.overhead_ms, c.metrics_interval_s) == ("fsync", 1.5, 5.0)


def test_model_names_an_id_or_one_version():
    """A schedule entry "m3" accepts any version of m3; "m3:1.0" only that version."""
    any_version, one = Step("m3"), Step("m3:1.0")
    assert any_version.matches("m3:1.0") and any_version.matches("m3:2") and not any_version.matches("m30:1")
    assert one.matches("m3:1.0") and not one.matches("m3:2")
    assert (one.model_id, one.version, any_version.version) == ("m3", "1.0", None)


BAD = [
    ({"sla_ms": None}, "sla_ms", "required"),
    ({"sla_ms": 0}, "sla_ms", "must be >"),
    ({"sla_ms": "50"}, "sla_ms", "expected a number"),
    ({"sla_ms": True}, "sla_ms", "expected a number"),
    ({"sla_mss": 50}, "sla_mss", "unknown key"),
    ({"default": 0.0}, "default", "expected a table"),
    ({"default": {"label": "x"}}, "default.score", "required"),
    ({"default": {"score": "high"}}, "default.score", "expected a number"),
    ({"schedule": []}, "schedule", "at least one"),
    ({"schedule": {"model": "m"}}, "schedule", "array of tables"),
    ({"schedule": [{"after_ms": 3}]}, "schedule[0].model", "required"),
    ({"schedule": [{"model": 3}]}, "schedule[0].model", "expected a string"),
    ({"schedule": [{"model": ""}]}, "schedule[0].model", "model_id"),
    ({"schedule": [{"model": "m:"}]}, "schedule[0].model", "model_id"),
    ({"schedule": [{"model": "m", "after": 3}]}, "schedule[0].after", "unknown key"),
    ({"schedule": [{"model": "m", "after_ms": -1}]}, "schedule[0].after_ms", ">= 0"),
    ({"schedule": [{"model": "m", "after_ms": 50}]}, "schedule[0].after_ms", "not before sla_ms"),
    ({"schedule": [{"model": "a", "after_ms": 20}, {"model": "b", "after_ms": 10}]}, "schedule[1].after_ms", "order"),
    ({"schedule": [{"model": "a"}, {"model": "a:2", "after_ms": 1}]}, "schedule[1].model", "already scheduled"),
    ({"schedule": [{"model": "a:1"}, {"model": "a:1"}]}, "schedule[1].model", "already scheduled"),
    ({"selection": {"policy": "ucb"}}, "selection.policy", "expected one of"),
    ({"selection": {"reward": "clicks"}}, "selection.reward", "expected one of"),
    ({"selection": {"epsilon": 0}}, "selection.epsilon", "must be >"),
    ({"selection": {"epsilon": 1.5}}, "selection.epsilon", "(0, 1]"),
    ({"selection": {"min_propensity": 0.6}, "schedule": [{"model": "a"}, {"model": "b"}]}, "min_propensity", ""),
    ({"selection": {"prior": {"alpha": 0}}}, "selection.prior.alpha", "must be >"),
    ({"selection": {"prior": {"shape": 1}}}, "selection.prior.shape", "unknown key"),
    ({"selection": {"polcy": "thompson"}}, "selection.polcy", "unknown key"),
    ({"topics": {"inputs": "../x"}}, "topics.inputs", ""),
    ({"topics": {"control": "c"}}, "topics.control", "unknown key"),
    ({"topics": {"durability": "fsync"}}, "topics.durability", "top-level key: put it before the first [table]"),
    ({"durability": "sync"}, "durability", "expected one of"),
    ({"overhead_ms": 60}, "overhead_ms", "leaves no time"),
    ({"metrics_interval_s": 0}, "metrics_interval_s", "must be >"),
]


@pytest.mark.parametrize(("change", "key", "reason"), BAD, ids=[f"{b[1]}-{i}" for i, b in enumerate(BAD)])
def test_errors_name_the_key_and_reason(change, key, reason):
    """A bad value is refused with a ConfigError (a ValueError) naming the key and why."""
    doc = {"sla_ms": 50, "schedule": [{"model": "m3"}]}
    doc.update(change)
    doc = {k: v for k, v in doc.items() if v is not None}
    with pytest.raises(ConfigError) as err:
        parse_config(doc)
    assert isinstance(err.value, ValueError)
    assert err.value.key.endswith(key) and str(err.value).startswith(err.value.key + ": ")
    assert reason in err.value.reason


@given(
    where=st.sampled_from(["", "selection", "selection.prior", "topics", "schedule"]),
    name=st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12),
)
def test_unknown_keys_are_refused_wherever_they_are(where, name):
    """Any key the config does not know, at any level, is refused by name."""
    doc: dict = {"sla_ms": 50, "schedule": [{"model": "m3"}], "selection": {"prior": {}}, "topics": {}}
    known = {
        "": ["sla_ms", "default", "schedule", "selection", "topics", "durability", "overhead_ms", "metrics_interval_s"],
        "selection": ["policy", "reward", "epsilon", "prior", "family", "min_propensity", "snapshot_interval_s"],
        "selection.prior": ["alpha", "beta", "mean", "sd", "noise_sd"],
        "topics": ["inputs", "scores", "decisions", "outcomes", "metrics"],
        "schedule": ["model", "after_ms"],
    }
    if name in known[where]:
        return
    table = {"": doc, "selection": doc["selection"], "selection.prior": doc["selection"]["prior"]}.get(where)
    if where == "topics":
        table = doc["topics"]
    elif where == "schedule":
        table = doc["schedule"][0]
    table[name] = 1
    with pytest.raises(ConfigError, match="unknown key") as err:
        parse_config(doc)
    assert err.value.key.endswith(name)


def test_a_decoy_needs_no_schedule():
    """Without a schedule every answer is the default: allowed only for a decoy."""
    with pytest.raises(ConfigError, match="schedule"):
        parse_config({"sla_ms": 10})
    c = parse_config({"sla_ms": 10, "default": {"score": 0.5, "label": "ok"}}, decoy_only=True)
    assert c.schedule == () and dict(c.default) == {"score": 0.5, "label": "ok"}


def test_file_errors_name_the_file(tmp_path):
    """A missing file, bad TOML and a bad key each say which file."""
    with pytest.raises(ConfigError, match="no config file at"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("sla_ms = = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML") as err:
        load_config(bad)
    assert str(bad) in str(err.value)
    bad.write_text('sla_ms = 50\n[[schedule]]\nmodel = "m"\nafter_ms = 70\n')
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert err.value.key == "schedule[0].after_ms" and str(bad) in str(err.value)


def test_a_config_built_in_code_is_checked_too():
    """Config() itself refuses what parse_config refuses (the checks sit in the dataclass)."""
    with pytest.raises(ConfigError, match="schedule\\[1\\].after_ms"):
        Config(sla_ms=50, schedule=(Step("a", 10), Step("b", 5)))
    c = Config(sla_ms=40, schedule=[Step("a", 1)])  # type: ignore[arg-type]
    assert c.schedule == (Step("a", 1.0),)


def test_the_module_docstring_config_parses():
    """The annotated config in rendezvous.config's docstring is a valid config."""
    import textwrap

    import rendezvous.config

    doc = rendezvous.config.__doc__ or ""
    block = textwrap.dedent(doc.split("\n\n", 1)[1].split("\n\nInvariants", 1)[0])
    c = parse_config(tomllib.loads(block))
    assert [s.model for s in c.schedule] == ["m3", "m2", "m1"] and c.overhead_ms == 2.0
    assert c.selection.policy == "thompson" and c.selection.prior == Prior(alpha=1, beta=1)
