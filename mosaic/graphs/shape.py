"""The agents of one query's graph, from the topology settings alone (no workload, no outcome).

dense (layers [n1, ..., nL]): layer l has n_l agents, each reading every output of layer l - 1
(layer 1 reads only the question); the aggregator reads all of layer L. Each layer is one cluster
for early exit. Agent i of a layer runs agents[i % len(agents)].

tree (branching b, depth d): layer 1 has b^d agents, layer l b^(d-l+1); agent j of layer l + 1
reads agents j*b .. j*b + b - 1 of layer l (its cluster) and starts when they are done, not when
the layer is; the aggregator reads the b agents of layer d. The agent at position p of its cluster
runs agents[p] (one small, one medium, one large model per cluster in Faster-MoA's 9-3-1). Or any
layer sizes (layers [3, 2] = a 3-2-1 tree): layer l's agents split into as many contiguous,
near-even clusters as layer l + 1 has agents, position p running agents[p % len(agents)].
"""
from __future__ import annotations

from dataclasses import dataclass

from mosaic.config.schema import TopologyConfig

ROOT = "agg"


@dataclass(frozen=True)
class AgentSpec:
    name: str                  # "L1.0" .. , ROOT for the aggregator; the request id is "<query>/<name>"
    layer: int                 # 1 = reads the question only; the aggregator's is the deepest
    model: str
    reads: tuple[str, ...]     # precursors whose outputs join the prompt; released when all are done
    cluster: str | None        # early-exit group (siblings); None for the aggregator


def _split(n: int, k: int) -> list[list[int]]:
    """0..n-1 in k contiguous groups, the first n % k one longer."""
    out, start = [], 0
    for j in range(k):
        size = n // k + (j < n % k)
        out.append(list(range(start, start + size)))
        start += size
    return out


def graph_shape(t: TopologyConfig, aggregator: str) -> tuple[AgentSpec, ...]:
    """The agents of every query's graph, precursors before successors, the aggregator last."""
    if t.kind == "dense":
        sizes = list(t.layers)
        groups = [[list(range(n))] for n in sizes]   # one cluster per layer
    elif t.kind == "tree":
        sizes = list(t.layers) or [t.branching ** (t.depth - i) for i in range(t.depth)]
        # Layer l's agents in as many contiguous, near-even clusters as layer l + 1 has agents
        # (the last layer: one cluster, the aggregator's).
        groups = [_split(n, sizes[li + 1] if li + 1 < len(sizes) else 1) for li, n in enumerate(sizes)]
    else:
        raise ValueError(f"topology.kind={t.kind} has no agent graph")
    out: list[AgentSpec] = []
    for li, n in enumerate(sizes):
        layer = li + 1
        cluster_of = {i: f"L{layer}.c{ci}" for ci, members in enumerate(groups[li]) for i in members}
        for i in range(n):
            if layer == 1:
                reads: tuple[str, ...] = ()
            elif t.kind == "dense":
                reads = tuple(f"L{layer - 1}.{j}" for j in range(sizes[li - 1]))
            else:
                reads = tuple(f"L{layer - 1}.{j}" for j in groups[li - 1][i])
            position = i if t.kind == "dense" else i - next(g[0] for g in groups[li] if i in g)
            out.append(AgentSpec(f"L{layer}.{i}", layer, t.agents[position % len(t.agents)], reads, cluster_of[i]))
    last = len(sizes)
    out.append(AgentSpec(ROOT, last + 1, aggregator, tuple(f"L{last}.{j}" for j in range(sizes[-1])), None))
    return tuple(out)
