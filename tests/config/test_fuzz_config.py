"""Random configurations either run with every request accounted for, or stop with a ConfigError
naming the offending field (issue 8, item 8).

Each example composes the real Hydra config with random overrides (valid and invalid values) and
runs it through mosaic.run.app.run on small synthetic workloads. An oracle knows which values are
invalid on their own; a config it calls valid may still be refused as a combination the cluster or
the profiles cannot serve (too little memory, too small a K, a tensor-parallel degree the profile
has no scaling for, Table-3 routing without replacement or for a dataset Table 3 lacks), and then the error must name one of the fields that decide that.
"""
import pytest
import math
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mosaic.run.app import run
from mosaic.core.errors import ConfigError
from mosaic.workload.types import aggregator_request_id
from tests.helpers import config

CAPACITY = ("cluster.memory_gib", "cluster.n_workers", "scheduler.max_models_per_worker",
            "scheduler.replication_cap", "aggregation.placement", "workload.routing")


def optional(values):
    return st.one_of(st.none(), values)


# Out-of-range values per field. Each example breaks none, one or two fields, so most examples run
# (a config with a bad value in every field would only ever test the first check).
INVALID = {
    "seed": st.integers(-5, -1),
    "workload.n_queries": st.integers(-1, 0),
    "workload.k": st.sampled_from([0, 7]),
    "workload.routing_noise": st.sampled_from([-0.5, math.nan]),
    "workload.skill_spread": st.just(-1.0),
    "workload.distractor_share": st.just(1.5),
    "workload.difficulty_length": st.sampled_from([1.0, -1.5]),
    "workload.difficulty_accuracy": st.just(-0.5),
    "workload.coupling": st.just("fitted"),
    "cluster.n_workers": st.integers(-1, 0),
    "cluster.memory_gib": st.sampled_from([0.0, -10.0, math.inf, math.nan]),
    "scheduler.max_models_per_worker": st.integers(-1, 0),
    "scheduler.replication_cap": st.integers(-1, 0),
    "scheduler.shard_cost": st.just("linear"),
    "aggregation.tau": st.none(),   # replaced below by a value the drawn policy refuses
}


@st.composite
def configs(draw):
    """(overrides, fields given an invalid value)."""
    ov = {
        "scheduler": draw(st.sampled_from(["ilp", "round_robin", "fifo", "least_loaded", "data_parallel"])),
        "workload": draw(st.sampled_from(["synth_small", "synth_gpqa", "synth_medmcqa", "smoke"])),
        "workload.n_queries": draw(st.integers(1, 8)),
        "workload.k": draw(st.integers(1, 6)),
        "workload.replacement": draw(st.booleans()),
        "workload.routing": draw(st.sampled_from(["router", "router", "paper_table3"])),
        "workload.routing_noise": draw(st.sampled_from([0.0, 0.15, 1.0])),
        # 3, 5 and 6 workers: tensor-parallel degrees the profiles have no scaling for.
        "cluster.n_workers": draw(st.sampled_from([4, 2, 1, 4, 2, 3, 5, 6])),
        # 16 GiB is too little for the 8B experts' weights plus a full KV cache: a capacity refusal.
        "cluster.memory_gib": draw(st.sampled_from([80.0, 40.0, 80.0, 24.0, 16.0])),
        "scheduler.max_models_per_worker": draw(optional(st.integers(1, 4))),
        "scheduler.replication_cap": draw(optional(st.integers(1, 5))),
        "scheduler.rr_order": draw(st.sampled_from(["first_seen", "pool"])),
        "scheduler.shard_cost": draw(st.sampled_from(["proportional", "affine"])),
        "aggregation": draw(st.sampled_from(["tau1", "tau067", "always"])),
        "aggregation.placement": draw(st.sampled_from(["tp", "scheduled"])),
        "seed": draw(st.integers(0, 2**32)),
    }
    if ov["aggregation"] != "always" and draw(st.booleans()):
        ov["aggregation.tau"] = draw(st.sampled_from([0.5, 0.6667, 1.0]))
        ov["aggregation.name"] = "my_tau"   # a preset's name labels the preset's tau only
    n_bad = draw(st.sampled_from([0, 0, 1, 1, 2]))
    bad = set(draw(st.lists(st.sampled_from(sorted(INVALID)), min_size=n_bad, max_size=n_bad, unique=True)))
    for f in bad:
        ov[f] = draw(INVALID[f])
    if "aggregation.tau" in bad:
        refused = [0.5, 1.0] if ov["aggregation"] == "always" else [None, -0.5, 0.0, 1.5]
        ov["aggregation.tau"] = draw(st.sampled_from(refused))
    return ov, bad


def override(key, value):
    return f"{key}=null" if value is None else f"{key}={value}"


def check_accounted(out):
    """Every expert and aggregator request has exactly one result; every query one final answer."""
    res = out.result
    wl = res.workload
    expert_ids = [r.id for r in wl.expert_requests()]
    assert len(expert_ids) == len(set(expert_ids)) == sum(len(q.experts) for q in wl.queries)
    done = Counter(r.request_id for r in res.expert.trace.requests)
    assert done == Counter(expert_ids)
    to_run = {aggregator_request_id(d.query_id) for d in res.decisions if not d.skip}
    assert Counter(r.request_id for r in res.aggregator.trace.requests) == Counter(to_run)
    assert set(res.final_answers) == {q.id for q in wl.queries}
    s = out.summary
    assert s["n_queries"] == len(wl.queries) and s["n_failed_requests"] == 0
    assert s["n_expert_requests"] == len(expert_ids) and s["n_aggregator_requests"] == len(to_run)
    assert s["end_to_end_s"] >= s["expert_stage_s"] > 0


@pytest.mark.slow
@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_random_config_runs_fully_or_names_the_bad_field(case):
    ov, bad = case
    cfg = config(*(override(k, v) for k, v in ov.items()))
    try:
        out = run(cfg)
    except ConfigError as e:
        message = str(e)
        assert "\n" not in message
        allowed = bad or set(CAPACITY)
        assert any(f in message for f in allowed), f"{message!r} names none of {sorted(allowed)}"
        return
    assert not bad, f"ran although {sorted(bad)} are invalid"
    assert len(out.result.workload.queries) == ov["workload.n_queries"]
    check_accounted(out)
