"""Which worker serves which model of an agent graph: every model of the graph stays loaded for the
whole run (an agent's request can come at any time), one engine per worker. `demand`: each model
gets one worker, and the workers left over go to the models with the most expected output tokens
per query (agent slots x mean output on the dataset), largest remainder first, ties to the earlier
model (load-aware, as MOSAIC places experts). `even`: workers go to the models in turn, whatever
their load. A request goes, when released, to the replica of its model with the fewest requests in
flight."""
from __future__ import annotations

from mosaic.config.schema import check_graph_workers
from mosaic.graphs.shape import AgentSpec
from mosaic.profiles import ProfileSet


def demand(shape: tuple[AgentSpec, ...], profiles: ProfileSet, dataset: str | None) -> dict[str, float]:
    """Expected output tokens per query, per model, in the order the graph first uses them."""
    out: dict[str, float] = {}
    for a in shape:
        out[a.model] = out.get(a.model, 0.0) + profiles.model(a.model).output_for(dataset).mean()
    return out


def place(shape: tuple[AgentSpec, ...], profiles: ProfileSet, dataset: str | None, n_workers: int,
          how: str = "demand") -> dict[int, str]:
    """worker -> model."""
    need = demand(shape, profiles, dataset)
    models = list(need)
    check_graph_workers(models, n_workers)   # the workload's aggregator counted too
    if how == "even":
        return {w: models[w % len(models)] for w in range(n_workers)}
    total = sum(need.values())
    spare = n_workers - len(models)
    share = {m: spare * need[m] / total for m in models}
    count = {m: 1 + int(share[m]) for m in models}
    left = n_workers - sum(count.values())
    for m in sorted(models, key=lambda m: (-(share[m] - int(share[m])), models.index(m)))[:left]:
        count[m] += 1
    workers, w = {}, 0
    for m in models:
        for _ in range(count[m]):
            workers[w] = m
            w += 1
    return workers
