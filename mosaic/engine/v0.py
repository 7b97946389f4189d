"""Continuous-batching engine for one session, vLLM V0 scheduling semantics.

Each iteration is either a prefill step (newly admitted sequences, prioritised over decoding, up to
max_num_batched_tokens) or a decode step (one token for every running sequence). Admission needs a
free sequence slot and KV room for the prompt; when a decode step would overflow the KV cache the
most recently admitted sequence is preempted and later recomputed (prompt + tokens so far).
Admission keeps a watermark of free KV (vLLM's 1% of blocks) so a preempted sequence is not
readmitted straight into the same shortage.

Between events (a sequence finishing, the KV cache filling up) the batch is constant and every
step adds one context token per sequence, so a run of decode steps has a closed-form duration.
The engine jumps over it in one timeout instead of thousands: same result, far fewer events.
"""
from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Generator, Protocol

from mosaic.engine.step_cost import CostModel


class Source(Protocol):
    """Where a late-binding engine takes its next request (mosaic/runtime): `take(fits)` returns
    (request id, prompt tokens, output tokens) of the request bound to this engine now, or None.
    `fits(prompt_tokens)` says whether the engine's free KV (after what it already queues) holds
    that prompt: a source may keep a request that does not fit for another replica. The engine asks
    only while it has a free sequence slot (running + queued < max_num_seqs), as vLLM's waiting
    queue admits; it never asks again after None until something in it changed (a step)."""

    def take(self, fits: Callable[[int], bool]) -> tuple[str, int, int] | None: ...

    def done(self, rid: str, t: float) -> None:
        """Request `rid` finished at time t (so the source knows what each replica still holds)."""


@dataclass(slots=True)   # a session curve makes ~10^6 of these per plan
class SeqState:
    rid: str
    prompt: int
    target: int            # output tokens to generate
    generated: int = 0
    start: float | None = None
    first_token: float | None = None
    finish: float | None = None
    # Decode bookkeeping while running: generated = g0 + (decode_clock - d0).
    g0: int = 0
    d0: int = 0
    epoch: int = 0         # bumps on preemption, invalidating stale heap entries


@dataclass
class EngineResult:
    seqs: list[SeqState]
    preemptions: int = 0
    steps: int = 0


class Wait(float):
    """A yielded duration that is the engine waiting (for the client to hand over a request), not a
    step: what a step costs depends on the host's load (mosaic/engine/host.py); a wait does not."""


class Step(float):
    """A yielded step duration (or a run of decode steps) that knows how many sequences it serves:
    how much a busy neighbour slows a step depends on its batch (mosaic/engine/host.py)."""

    seqs: int

    def __new__(cls, seconds: float, seqs: int) -> "Step":
        step = super().__new__(cls, seconds)
        step.seqs = seqs
        return step


class Jump(Step):
    """A run of `steps` identical decode steps that an engine fed through an inbox yields: the caller
    may cut it short when a request arrives (or is cancelled) mid-run, and sends back how many steps
    it let run (None or `steps`: all of them). `cost_of(k)`: the first k steps' seconds, so the caller
    can find the step in progress when the arrival came; the arrival joins after it, as it would
    between single steps."""

    steps: int
    cost_of: Callable[[int], float]

    def __new__(cls, seconds: float, seqs: int, steps: int, cost_of: Callable[[int], float]) -> "Jump":
        jump = super().__new__(cls, seconds, seqs)
        jump.steps, jump.cost_of = steps, cost_of
        return jump

    def steps_by(self, work: float) -> int:
        """The steps begun by `work` seconds into the run (at least 1: the step in progress)."""
        lo, hi = 1, self.steps
        while lo < hi:
            mid = (lo + hi) // 2
            if self.cost_of(mid) >= work - 1e-12:
                hi = mid
            else:
                lo = mid + 1
        return lo


@dataclass
class BatchEngine:
    cost: CostModel
    kv_capacity: int
    max_num_seqs: int
    max_num_batched_tokens: int
    watermark: float = 0.01
    result: EngineResult = field(init=False)

    def run(self, requests: list[tuple[str, int, int]], now: Callable[[], float], source: Source | None = None
            ) -> Generator[float, None, EngineResult]:
        """Yields step durations (seconds); the caller advances the clock. requests: (id, prompt,
        output tokens) in submission order, all submitted at once. With a `source`, more are taken
        from it whenever a slot is free (late binding), until it has none left and the engine is
        empty; every request of the source is released before the run (none arrives later)."""
        seqs = [SeqState(rid, p, t) for rid, p, t in requests]
        self.result = res = EngineResult(seqs)
        waiting: deque[SeqState] = deque(seqs)
        running: dict[str, SeqState] = {}          # insertion order = admission order
        finish_heap: list[tuple[int, int, str]] = []  # (decode clock at finish, epoch, rid)
        clock = 0                                  # decode steps taken so far
        base_sum = 0                               # sum(prompt + g0 - d0) over running
        # Locals, not attributes: session curves run this loop about a million times per plan.
        kv_capacity, max_num_seqs, max_tokens = self.kv_capacity, self.max_num_seqs, self.max_num_batched_tokens
        reserve = int(self.watermark * kv_capacity)
        prefill_s, decode_run_s = self.cost.prefill_s, self.cost.decode_run_s
        heappush, heappop = heapq.heappush, heapq.heappop
        # Admission that failed stays failed until a sequence leaves (a finish or a preemption): a
        # decode step only adds context. So a failed try is not repeated after each decode run.
        blocked = False

        def top_up() -> bool:
            """Take requests from the source while a slot is free and the KV holds them."""
            queued = sum(s.prompt + s.generated + 1 for s in waiting)
            used = base_sum + len(running) * clock + queued + reserve
            took = False
            while len(running) + len(waiting) < max_num_seqs:
                got = source.take(lambda p: used + p + 1 <= kv_capacity)
                if got is None:
                    break
                s = SeqState(*got)
                seqs.append(s)
                waiting.append(s)
                used += s.prompt + 1
                took = True
            return took

        while waiting or running or (source is not None and top_up()):
            if source is not None and not blocked:
                top_up()
            # -------- admission + prefill step (V0 prioritises prefills)
            if waiting and not blocked:
                admitted: list[SeqState] = []
                used = base_sum + len(running) * clock
                free = max_num_seqs - len(running)
                tokens = squares = 0
                while waiting and len(admitted) < free:
                    s = waiting[0]
                    ctx = s.prompt + s.generated
                    if used + ctx + 1 + reserve > kv_capacity or (admitted and tokens + ctx > max_tokens):
                        break
                    waiting.popleft()
                    admitted.append(s)
                    used += ctx + 1
                    tokens += ctx
                    squares += ctx * ctx
                if admitted:
                    t0 = now()
                    dur = prefill_s(tokens, float(squares), len(admitted))
                    res.steps += 1
                    yield dur
                    t1 = now()
                    for s in admitted:
                        if s.start is None:
                            s.start = t0
                        s.generated += 1        # a prefill emits the next token
                        if s.first_token is None:
                            s.first_token = t1
                        if s.generated >= s.target:
                            s.finish = t1
                            if source is not None:
                                source.done(s.rid, t1)
                            continue
                        s.g0, s.d0 = s.generated, clock
                        running[s.rid] = s
                        base_sum += s.prompt + s.g0 - s.d0
                        heappush(finish_heap, (clock + s.target - s.generated, s.epoch, s.rid))
                    continue
                blocked = True
            if not running:
                raise RuntimeError("engine stalled: a sequence cannot fit the KV cache")  # pragma: no cover
            # -------- a run of decode steps up to the next event
            n = len(running)
            used = base_sum + n * clock
            room_steps = (kv_capacity - used) // n
            if room_steps < 1:
                victim = running.pop(next(reversed(running)))
                victim.generated = victim.g0 + (clock - victim.d0)
                base_sum -= victim.prompt + victim.g0 - victim.d0
                victim.epoch += 1
                waiting.appendleft(victim)
                res.preemptions += 1
                blocked = False
                continue
            while finish_heap:
                head = running.get(finish_heap[0][2])
                if head is not None and head.epoch == finish_heap[0][1]:
                    break
                heappop(finish_heap)
            steps = min(finish_heap[0][0] - clock, room_steps)
            # Admission is only possible again once a sequence leaves; if something is waiting
            # and slots are free but KV is short, a finish is the next event that can change that.
            yield decode_run_s(n, used, steps)
            res.steps += steps
            clock += steps
            if finish_heap and finish_heap[0][0] <= clock:
                t = now()
                blocked = False
                while finish_heap and finish_heap[0][0] <= clock:
                    _, epoch, rid = heappop(finish_heap)
                    s = running.get(rid)
                    if s is None or s.epoch != epoch:
                        continue
                    del running[rid]
                    base_sum -= s.prompt + s.g0 - s.d0
                    s.generated = s.target
                    s.finish = t
                    if source is not None:
                        source.done(rid, t)
        return res
