"""Agent graphs' shapes and the early-exit rules."""
import math
from collections import Counter

import numpy as np
import pytest

from mosaic.config.schema import TopologyConfig
from mosaic.core.errors import ConfigError
from mosaic.graphs.early_exit import q_metric, should_exit
from mosaic.graphs.outcomes import AgentOutcome
from mosaic.graphs.shape import ROOT, graph_shape


def test_tree_9_3_1_has_clusters_feeding_one_successor_each():
    shape = graph_shape(TopologyConfig(name="t", kind="tree", branching=3, depth=2, agents=["S", "M", "L"]), "A")
    by = {a.name: a for a in shape}
    assert [a.name for a in shape if a.layer == 1] == [f"L1.{i}" for i in range(9)]
    assert by["L2.1"].reads == ("L1.3", "L1.4", "L1.5") and by["L2.1"].model == "M"
    assert {by[f"L1.{i}"].cluster for i in (3, 4, 5)} == {"L1.c1"}
    assert [by[f"L1.{i}"].model for i in range(3)] == ["S", "M", "L"]    # one of each model per cluster
    assert by[ROOT].reads == ("L2.0", "L2.1", "L2.2") and by[ROOT].model == "A" and shape[-1].name == ROOT


def test_dense_layers_read_every_output_below():
    shape = graph_shape(TopologyConfig(name="d", kind="dense", layers=[4, 2], agents=["X", "Y"]), "A")
    assert len(shape) == 4 + 2 + 1
    by = {a.name: a for a in shape}
    assert by["L2.0"].reads == by["L2.1"].reads == ("L1.0", "L1.1", "L1.2", "L1.3")
    assert by[ROOT].reads == ("L2.0", "L2.1") and by["L1.3"].model == "Y"
    assert {a.cluster for a in shape if a.layer == 1} == {"L1.c0"}       # a layer is one cluster


@pytest.mark.parametrize("settings, field", [
    ({"kind": "flat", "layers": [9, 9]}, "topology.layers set with topology.kind=flat"),
    ({"kind": "tree", "agents": ["a", "b"]}, "topology.agents gives 2 models for clusters of topology.branching=3"),
    ({"kind": "dense", "layers": [], "agents": ["a"]}, "topology.layers must list"),
    # a layer of 100000 agents ran until killed: each of the next layer's agents reads all of them
    ({"kind": "dense", "layers": [100000, 2], "agents": ["a"]}, "each in [1, 4096], for a dense graph"),
    ({"kind": "tree", "layers": [5000, 2], "agents": ["a"]}, "each in [1, 4096] and none more"),
    ({"kind": "tree", "agents": ["a", "b", "c"], "overlap": "incremental", "overlap_chunk": 10**9},
     "overlap_chunk must be an integer number of tokens in [1, 1000000]"),
    ({"kind": "dense", "layers": [3], "agents": ["a"], "exit_tau": 0.5}, "topology.exit_tau is read by"),
    # a dense graph ran with branching 5 or depth 3 as if they were not given
    ({"kind": "dense", "layers": [3], "agents": ["a"], "branching": 5}, "topology.branching and topology.depth shape a tree"),
    ({"kind": "dense", "layers": [3], "agents": ["a"], "depth": 3}, "topology.branching and topology.depth shape a tree"),
    ({"kind": "tree", "agents": ["a", "b", "c"], "concurrency": 0}, "topology.concurrency"),
    ({"kind": "tree", "agents": ["a", "b", "c"], "early_exit": "sometimes"}, "topology.early_exit"),
    ({"kind": "tree", "agents": ["a", "b", "c"], "overlap_chunk": 8}, "topology.overlap_chunk is read by"),
    ({"kind": "tree", "agents": ["a", "b", "c"], "overlap": "eager"}, "topology.overlap"),
    ({"kind": "flat", "overlap": "incremental"}, "topology.overlap set with topology.kind=flat"),
    # an empty name ran as the workload's aggregator, and summary.json said ""
    ({"kind": "tree", "agents": ["a", "b", "c"], "aggregator": ""}, "topology.aggregator must name the root's model"),
    # early exit decides once two of a cluster have finished: clusters of 2 leave nothing to cancel
    ({"kind": "tree", "branching": 2, "agents": ["a", "b"], "early_exit": "agreement"},
     "topology.early_exit=agreement can never cancel an agent here: .* the largest cluster has 2"),
    ({"kind": "tree", "layers": [3, 2], "agents": ["a"], "early_exit": "qmetric"}, "largest cluster has 2"),
    ({"kind": "dense", "layers": [2, 2], "agents": ["a"], "early_exit": "qmetric"}, "largest cluster has 2"),
])
def test_bad_topology_settings_name_the_field(settings, field):
    with pytest.raises(ConfigError, match=field if ".*" in field else field.replace(".", r"\.").replace("[", r"\[")):
        TopologyConfig(name="x", **settings)


@pytest.mark.parametrize("settings, largest", [
    ({"kind": "tree", "agents": ["a", "b", "c"]}, 3),                      # 9-3-1
    ({"kind": "tree", "layers": [6, 2], "agents": ["a"]}, 3),              # 6 in 2 clusters, then 2 in 1
    ({"kind": "tree", "layers": [7, 2], "agents": ["a"]}, 4),              # near-even: 4 and 3
    ({"kind": "dense", "layers": [2, 5], "agents": ["a"]}, 5),
])
def test_the_largest_cluster_is_the_shapes(settings, largest):
    t = TopologyConfig(name="x", **settings)
    assert t.largest_cluster() == largest
    sizes = Counter(a.cluster for a in graph_shape(t, "A") if a.cluster is not None)
    assert max(sizes.values()) == largest


def out(answer, conf):
    return AgentOutcome(10, answer, conf, True)


def test_q_metric_by_hand():
    outs = [out("A", 0.9), out("A", 0.8), out("B", 0.5)]
    c = math.sqrt((0.81 + 0.64 + 0.25) / 3)
    p = (0.9 * 0.8) / (0.9 * 0.8 + 0.9 * 0.5 + 0.8 * 0.5)      # only the A-A pair agrees
    b = 1 - abs(p - 0.7) / 0.7
    assert q_metric(outs, 0.7) == pytest.approx(math.sqrt(c * b))


def test_exit_rules_need_two_outputs_and_are_seeded():
    rng = np.random.default_rng(0)
    assert not should_exit("agreement", [out("A", 0.9)], rng)
    assert should_exit("agreement", [out("A", 0.9), out("A", 0.2)], rng)
    assert not should_exit("agreement", [out("A", 0.9), out("B", 0.9)], rng)
    assert not should_exit("none", [out("A", 0.9), out("A", 0.9)], rng)
    outs = [out("A", 0.9), out("A", 0.8), out("B", 0.7)]
    draws = [[should_exit("qmetric", outs, np.random.default_rng(s)) for _ in range(1)] for s in range(200)]
    share = sum(d[0] for d in draws) / len(draws)
    assert share == pytest.approx(q_metric(outs, 0.7), abs=0.1)      # exits with probability Q
    again = [should_exit("qmetric", outs, np.random.default_rng(s)) for s in range(200)]
    assert again == [d[0] for d in draws]


def test_a_tree_of_given_layer_sizes_splits_each_layer_into_the_next_layers_clusters():
    shape = graph_shape(TopologyConfig(name="t", kind="tree", layers=[3, 2], agents=["S", "L"]), "A")
    by = {a.name: a for a in shape}
    assert by["L2.0"].reads == ("L1.0", "L1.1") and by["L2.1"].reads == ("L1.2",)
    assert [by[f"L1.{i}"].model for i in range(3)] == ["S", "L", "S"]   # position within its cluster
    assert by[ROOT].reads == ("L2.0", "L2.1") and by["L2.0"].cluster == by["L2.1"].cluster
    with pytest.raises(ConfigError, match="none more than the layer below"):
        TopologyConfig(name="t", kind="tree", layers=[2, 3], agents=["S"])
