"""An agent-graph run's shape and placement, made and checked when the run is built
(mosaic/run/builder.py build_run), so that what they refuse (a model the profiles lack, one that
fits no worker, a scheduler that leaves a model without a worker) stops the run, and a sweep's
up-front check of its jobs, before any work. The run itself: mosaic/run/graph_app.py."""
from __future__ import annotations

from dataclasses import dataclass, replace

from mosaic.cluster import Cluster
from mosaic.config.schema import MosaicConfig, WorkloadConfig
from mosaic.core.errors import ConfigError
from mosaic.costs.predict import fitting_workers, refuse_unfitting
from mosaic.graphs.placement import place
from mosaic.graphs.shape import ROOT, AgentSpec, graph_shape
from mosaic.profiles import ProfileSet
from mosaic.workload.prompts import AGGREGATOR_TEMPLATE_TOKENS
from mosaic.workload.types import Query, Request, Workload, aggregator_request_id, expert_request_id, expert_slots


@dataclass(frozen=True)
class GraphSetup:
    shape: tuple
    placement: dict[int, str]   # worker -> the model it keeps loaded
    dataset: str | None
    models: frozenset[str]
    # topology.placement=scheduler: the policy's solver report (mosaic/run/metrics.py solver_info)
    solver: dict | None = None
    # The MoA pipeline online (topology=flat, arrivals not batch): each query's own graph, its
    # routed experts then the aggregator, by query id (shape is then empty).
    shapes: dict[str, tuple] | None = None

    def shape_for(self, query_id: str) -> tuple:
        """The agents of one query's graph (the topology's shape, or the query's own online)."""
        return self.shape if self.shapes is None else self.shapes[query_id]


def dataset_of(w: WorkloadConfig) -> str | None:
    return w.dataset or (w.preset if w.kind == "synthetic" else None)


def check_settings(c: MosaicConfig) -> None:
    """A graph's settings that cannot go together, said before anything is built (the backend's
    own checks, vLLM installed among them, come after)."""
    t, a = c.topology, c.arrivals
    if a.online() and t.kind != "flat" and t.concurrency != 1:
        raise ConfigError(f"topology.concurrency={t.concurrency} keeps that many queries in flight (a closed loop), "
                          f"but arrivals={a.name} starts each query at its arrival; remove one of them")
    if a.online() and c.runtime.name == "pull" and t.overlap != "none":
        raise ConfigError("runtime=pull binds a request when a replica has room, but topology.overlap prefills it on "
                          "a worker chosen ahead; use another runtime or topology.overlap=none")
    if c.runtime.replan and a.online() and c.backend.name != "sim":
        raise ConfigError(f"runtime.replan moves replicas between models mid-run, which backend={c.backend.name} "
                          "does not do yet (its workers keep one engine); set runtime.replan=false or backend=sim")
    if t.kind == "flat":
        return
    if t.overlap != "none" and c.backend.name == "vllm" and not c.backend.options.get("replay", True):
        raise ConfigError("topology.overlap=incremental prefills prompts of known lengths: it needs "
                          "backend.options.replay=true on vLLM (natural generation writes its own lengths)")
    if t.profiles and not t.aggregator:
        raise ConfigError("topology.profiles gives the agents their own profile set: name the aggregator's model "
                          "from it too (topology.aggregator)")


# The online MoA placement is planned on the expected mix: at most this many queries' requests.
PLAN_SAMPLE = 100


def moa_shape(q: Query, aggregator: str) -> tuple[AgentSpec, ...]:
    """One query of the MoA pipeline as a graph: its routed expert slots (agent "<model>" or, for a
    model's s-th sample, "<model>@<s>"), all read by the aggregator."""
    experts = tuple(AgentSpec(m if s == 1 else f"{m}@{s}", 1, m, (), "L1.c0") for m, s in expert_slots(q.experts))
    return experts + (AgentSpec(ROOT, 2, aggregator, tuple(a.name for a in experts), None),)


def expert_rid(query_id: str, agent: str) -> str:
    """The workload's request id of a MoA graph's expert agent (its outcome's key)."""
    m, _, s = agent.partition("@")
    return expert_request_id(query_id, m, int(s) if s else 1)


def prepare_moa(c: MosaicConfig, cluster: Cluster, profiles: ProfileSet, workload: Workload) -> GraphSetup:
    """The MoA pipeline online: every query's graph, and a worker per model for the whole run,
    placed by the scheduler (one model per worker) on the requests of the first PLAN_SAMPLE
    queries (the expected mix; planning every query of a long trace would take longer than
    serving it), the aggregator's prompts priced at the experts' calibration mean outputs."""
    from mosaic.run.metrics import solver_info
    from mosaic.run.pipeline import plan_stage

    shapes = {q.id: moa_shape(q, workload.aggregator) for q in workload.queries}
    order = list(dict.fromkeys([*workload.expert_models, workload.aggregator]))
    used = {a.model for sh in shapes.values() for a in sh}
    order = [m for m in order if m in used]
    if len(order) > c.cluster.n_workers:
        raise ConfigError(f"arrivals={c.arrivals.name}: an online run keeps each of its {len(order)} models "
                          f"({', '.join(order)}) loaded on a worker of its own, but cluster.n_workers="
                          f"{c.cluster.n_workers}; set cluster.n_workers >= {len(order)} or route to fewer experts "
                          "(workload.experts)")
    for m in order:
        if not fitting_workers(profiles.model(m), profiles.engine, cluster):
            refuse_unfitting(m, profiles.model(m), profiles.engine, cluster)
    mean = {m: (workload.calibration[m].mean_output if m in workload.calibration
                else profiles.model(m).output_for(dataset_of(c.workload)).mean()) for m in order}
    sample = workload.queries[:PLAN_SAMPLE]
    ids = {q.id for q in sample}
    requests = [r for r in workload.expert_requests() if r.query_id in ids]
    requests += [Request(aggregator_request_id(q.id), q.id, workload.aggregator,
                         q.prompt_tokens + AGGREGATOR_TEMPLATE_TOKENS + round(sum(mean[m] for m in q.experts)),
                         "aggregator") for q in sample]
    # The plan's requests are both stages' at once (one model per worker, all loaded together).
    requests = [replace(r, stage="expert") for r in requests]
    _, plan = plan_stage("expert", requests, order, replace(c.scheduler, max_models_per_worker=1), "scheduled",
                         cluster, profiles, workload)
    given = {wp.worker: wp.sessions[0].model for wp in plan.workers if wp.sessions}
    # A worker the plan left idle gets the model with the most expected work per replica.
    work = {m: sum(1 for r in requests if r.model == m) * mean[m] for m in order}
    placement = dict(given)

    def count(m: str) -> int:
        return sum(1 for x in placement.values() if x == m)

    for w in range(c.cluster.n_workers):
        if w not in placement:
            placement[w] = max(order, key=lambda m: (work[m] / max(count(m), 1e-9), -order.index(m)))
    # A model the plan placed nowhere (a policy that replicates one model, or one the sample of
    # queries never asked) takes a worker from the model with the most replicas.
    for m in order:
        if count(m) == 0:
            donor = max((x for x in order if count(x) >= 2), key=lambda x: (count(x), -order.index(x)), default=None)
            if donor is None:
                raise ConfigError(f"arrivals={c.arrivals.name}: scheduler {c.scheduler.name} left {m} without a worker "
                                  f"and no model has a replica to spare; set cluster.n_workers > {len(order)}")
            w = max(x for x, y in placement.items() if y == donor)
            placement[w] = m
    return GraphSetup((), dict(sorted(placement.items())), dataset_of(c.workload), frozenset(order),
                      solver_info(plan), shapes)


def prepare(c: MosaicConfig, cluster: Cluster, profiles: ProfileSet, graph_profiles: ProfileSet | None,
            workload: Workload) -> GraphSetup:
    check_settings(c)
    if c.topology.kind == "flat":
        return prepare_moa(c, cluster, profiles, workload)   # build_run said these first; a Run made another way is checked here
    t = c.topology
    profiles = graph_profiles or profiles
    shape = graph_shape(t, t.aggregator or workload.aggregator)
    models = {a.model for a in shape}
    for m in sorted(models):
        if m not in profiles.models:
            raise ConfigError(f"topology.agents / topology.aggregator: model {m} is not in the profiles "
                              f"'{t.profiles or c.workload.profiles}' ({', '.join(profiles.models)})")
    for m in sorted(models):   # as the flat pipeline's planning refuses it (engine.num_gpu_blocks, memory)
        if not fitting_workers(profiles.model(m), profiles.engine, cluster):
            refuse_unfitting(m, profiles.model(m), profiles.engine, cluster)
    dataset = dataset_of(c.workload)
    solver = None
    if t.placement == "scheduler":
        placement, solver = scheduled_placement(c, cluster, workload, shape, profiles, dataset)
    else:
        placement = place(shape, profiles, dataset, c.cluster.n_workers, t.placement)
    return GraphSetup(shape, placement, dataset, frozenset(models), solver)


def scheduled_placement(c: MosaicConfig, cluster: Cluster, workload: Workload, shape: tuple, profiles: ProfileSet,
                        dataset: str | None) -> tuple[dict[int, str], dict | None]:
    """topology.placement=scheduler: the scheduler core places the graph's whole demand (every
    agent request of every query, one model per worker, as MOSAIC places experts) and each worker
    keeps the model the plan gives it; a worker the plan leaves idle gets one by demand
    (mosaic/graphs/placement.py). Also the policy's solver report (None for a policy without one)."""
    from mosaic.run.metrics import solver_info
    from mosaic.run.pipeline import plan_stage
    from mosaic.workload.types import Request

    mean_out = {a.model: profiles.model(a.model).output_for(dataset).mean() for a in shape}
    by_name = {a.name: a for a in shape}
    requests = [Request(f"{q.id}/{a.name}", q.id, a.model,
                        q.prompt_tokens + (AGGREGATOR_TEMPLATE_TOKENS + round(sum(mean_out[by_name[p].model] for p in a.reads))
                                           if a.reads else 0), "expert")
                for q in workload.queries for a in shape]
    order = list(dict.fromkeys(a.model for a in shape))
    # The graph's models have no calibration split: costed from their profiles.
    _, plan = plan_stage("expert", requests, order, replace(c.scheduler, max_models_per_worker=1), "scheduled",
                         cluster, profiles, replace(workload, calibration={}))
    fallback = place(shape, profiles, dataset, c.cluster.n_workers, "demand")
    given = {wp.worker: wp.sessions[0].model for wp in plan.workers if wp.sessions}
    missing = [m for m in order if m not in given.values()]
    if missing:   # a policy that replicates one model (data_parallel) may leave others out
        raise ConfigError(f"topology.placement=scheduler: scheduler {c.scheduler.name} placed no worker for "
                          f"{', '.join(missing)}; choose a scheduler that places every model (engine_aware, ilp, "
                          f"round_robin, least_loaded) or topology.placement=demand")
    return {w: given.get(w, fallback[w]) for w in range(c.cluster.n_workers)}, solver_info(plan)
