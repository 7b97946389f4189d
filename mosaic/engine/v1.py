"""Continuous-batching engine for one session, vLLM V1 scheduling semantics (vllm 0.32's
v1/core/sched/scheduler.py with FCFS policy, no speculative decoding, no connector).

Every step has one token budget (max_num_batched_tokens) shared by prefill and decode:
- Running requests are served first, in admission order: a decoding request takes 1 token, a
  request still prefilling takes min(rest of its prompt, budget) (chunked prefill). A request whose
  new tokens need a KV block that is not free preempts the most recently admitted running request
  (its blocks freed, its progress reset) until the block fits, or preempts itself and ends the loop.
- Only if nothing was preempted this step, waiting requests are admitted in queue order while
  budget, sequence slots and KV allow: the whole prompt (plus tokens generated before a preemption)
  must fit in free blocks (scheduler_reserve_full_isl), and the first chunk is min(rest, budget).
- A request samples a token in the step that completes its prompt, and one per decode step after.
- A preempted request goes to the front of the queue and recomputes its prompt and generated tokens.
  With prefix caching its full blocks stay cached in the free queue after release (tail block
  first, oldest freed blocks reused first), so when it resumes it recomputes only the blocks that
  were reused meanwhile.
KV is counted in blocks of block_size tokens: a request holds ceil(tokens with KV / block_size).

Between events the batch is constant (all decoding, nothing admissible, no block shortage), so a
run of decode steps has a closed-form duration and is taken in one jump, as in mosaic/engine/v0.py.
An engine fed through an Inbox (agent graphs) jumps too: the run is yielded as a Jump, which its
caller cuts short at the step in progress when a request arrives, is cancelled or is watched, so
requests join between steps exactly as when stepping one step at a time.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Generator

from mosaic.engine.step_cost import CostModel
from mosaic.engine.v0 import EngineResult, Jump, Source, Step, Wait


def _blocks(tokens: int, block_size: int) -> int:
    return -(-tokens // block_size)


@dataclass
class Inbox:
    """Requests handed to a running engine over time (agent graphs: a request is released when its
    precursors finish). The caller appends to `arrivals` and `cancels`; the engine takes them
    between steps, as vLLM's engine core takes requests from its input queue, and reports each
    request it finishes in `finished`. When it has nothing to do it yields None: the caller wakes
    it when something arrives, or closes the inbox to end the engine."""
    # (id, prompt tokens, output tokens[, prefix key]): requests with one prefix key share their
    # prompts' leading tokens, so one reuses the KV blocks another left cached (prefix caching).
    arrivals: deque = field(default_factory=deque)
    cancels: set = field(default_factory=set)         # request ids to abort (waiting or running)
    finished: list = field(default_factory=list)      # V1Seq, as they finish (or are cancelled)
    # id -> [every, next]: report (id, tokens generated) in `progress` each time it has generated
    # `every` more tokens (a streaming client's view of a running request).
    watch: dict = field(default_factory=dict)
    progress: list = field(default_factory=list)
    closed: bool = False
    # What the engine said when it last yielded: its free KV blocks (after the step it is taking)
    # and the requests waiting for a place in its batch. A client binding requests late reads them
    # (mosaic/backends/sim/graph_pool.py room).
    free_blocks: int = 0
    queued: int = 0


@dataclass(eq=False)   # identity: requests are compared by who they are
class V1Seq:
    rid: str
    prompt: int
    target: int             # output tokens to generate
    generated: int = 0
    computed: int = 0       # tokens whose KV is computed
    blocks: int = 0         # KV blocks held
    start: float | None = None
    first_token: float | None = None
    finish: float | None = None
    cached: list | None = None   # while preempted: its free-queue segment of still-cached blocks
    preemptions: int = 0
    cancelled: bool = False      # aborted through an Inbox before it finished
    key: str | None = None       # prefix key (Inbox): blocks cached under it are reused by its kin
    cache_hit: int = 0           # prompt tokens found in the prefix cache when first admitted

    @property
    def num_tokens(self) -> int:
        return self.prompt + self.generated


@dataclass
class StepRecord:
    """One engine step: (request id, tokens scheduled) in schedule order, and who was preempted."""
    scheduled: tuple[tuple[str, int], ...]
    preempted: tuple[str, ...]
    duration: float
    repeat: int = 1          # a jump over `repeat` identical-shape decode steps


@dataclass
class V1Engine:
    cost: CostModel
    kv_blocks: int            # usable KV blocks (the engine's block count minus its null block)
    block_size: int
    max_num_seqs: int
    max_num_batched_tokens: int
    prefix_caching: bool = True
    # The client hands requests to the engine one at a time, each taking submit_s (vLLM: input
    # processing and the message to the engine-core process), while the engine already steps: request
    # i reaches the queue at (i + 1) * submit_s after the session starts, and steps start with what
    # has arrived (0 = all at once).
    submit_s: float = 0.0
    record_steps: bool = False   # keep a StepRecord per step (tests, fidelity diagnostics)
    # With an inbox, jump over runs of decode steps that an arrival may cut short (Jump); False:
    # one step at a time, the reference the jumps are tested against.
    inbox_jumps: ClassVar[bool] = True
    result: EngineResult = field(init=False)
    steps_log: list[StepRecord] = field(init=False, default_factory=list)
    _done: Callable | None = field(init=False, default=None, repr=False)

    def run(self, requests: list[tuple[str, int, int]], now: Callable[[], float], inbox: Inbox | None = None,
            source: Source | None = None) -> Generator[float | None, None, EngineResult]:
        """Yields step durations (seconds); the caller advances the clock. requests: (id, prompt,
        output tokens) in submission order, all submitted at once. With an `inbox`, more arrive
        (and some are cancelled) while it runs: it steps one at a time (no jump can know the next
        arrival) and yields None when idle, until the inbox is closed. With a `source` (late
        binding, mosaic/engine/v0.py Source), requests are taken from it between steps whenever a
        slot is free and the KV holds the prompt, each handed over as a submitted one is
        (submit_s), until it has none left and the engine is empty."""
        B = self.block_size
        self._done = source.done if source is not None else None
        seqs = [V1Seq(rid, p, t) for rid, p, t in requests]
        self.result = res = EngineResult(seqs)  # type: ignore[arg-type]
        t_start = now()
        pending: deque[tuple[float, V1Seq]] = deque(
            (t_start + (i + 1) * self.submit_s, s) for i, s in enumerate(seqs)) if self.submit_s > 0 else deque()
        waiting: deque[V1Seq] = deque() if pending else deque(seqs)
        running: list[V1Seq] = []
        # Free blocks in reuse order: [owner, n] segments; owner is a preempted request whose
        # cached prefix these blocks still hold (its highest block first), else None.
        free_q: deque[list] = deque([[None, self.kv_blocks]])
        free = self.kv_blocks
        keyed: dict[str, list] = {}   # prefix key -> its free-queue segment of cached blocks

        def take(n: int) -> None:
            nonlocal free
            free -= n
            while n:
                seg = free_q[0]
                k = min(n, seg[1])
                seg[1] -= k
                n -= k
                if seg[1] == 0:
                    free_q.popleft()

        def release(s: V1Seq, keep_cached: bool) -> None:
            nonlocal free
            cached = min(s.computed // B, s.blocks) if keep_cached and self.prefix_caching else 0
            if s.blocks - cached:
                free_q.append([None, s.blocks - cached])
            if cached:
                seg = [s, cached]
                free_q.append(seg)
                s.cached = seg
            free += s.blocks
            s.blocks = 0

        def preempt(v: V1Seq) -> None:
            release(v, keep_cached=True)
            v.computed = 0
            v.preemptions += 1
            res.preemptions += 1
            waiting.appendleft(v)

        def reuse_cached(s: V1Seq) -> None:
            """A resuming request takes back its cached prefix (the blocks not reused meanwhile),
            capped so at least one token is computed, as vLLM's prefix-cache lookup is; a request
            with a prefix key, the blocks its kin left cached under it."""
            nonlocal free
            seg, s.cached = s.cached, None
            owner: object = s
            if seg is None and s.key is not None and s.key in keyed:
                seg, owner = keyed.pop(s.key), s.key
            if seg is None or seg[0] is not owner or seg[1] == 0:
                return
            hits = min(seg[1], (s.num_tokens - 1) // B)
            seg[0], seg[1] = None, seg[1] - hits   # blocks beyond the hit stay free, unowned
            free -= hits
            s.blocks = hits
            s.computed = hits * B
            if s.preemptions == 0:
                s.cache_hit = hits * B

        def top_up(t: float) -> bool:
            """Take requests from the source while a slot is free and the KV holds their prompts."""
            queued = sum(_blocks(s.num_tokens, B) for s in waiting) + sum(_blocks(p[1].num_tokens, B) for p in pending)
            took = False
            while len(running) + len(waiting) + len(pending) < self.max_num_seqs:
                got = source.take(lambda p: queued + _blocks(p, B) <= free)
                if got is None:
                    break
                s = V1Seq(*got)
                seqs.append(s)
                queued += _blocks(s.prompt, B)
                if self.submit_s > 0:
                    pending.append((max(t, pending[-1][0] if pending else t) + self.submit_s, s))
                else:
                    waiting.append(s)
                took = True
            return took

        while (waiting or running or pending or (inbox is not None and not inbox.closed)
               or (source is not None and top_up(now()))):
            t = now()
            while pending and pending[0][0] <= t:   # arrivals join the queue between steps
                waiting.append(pending.popleft()[1])
            if source is not None:
                top_up(t)
                while pending and pending[0][0] <= t:
                    waiting.append(pending.popleft()[1])
            if inbox is not None:
                self._take(inbox, seqs, waiting, running, pending, release, t)
            if not waiting and not running:          # idle until the next request arrives
                if inbox is not None:
                    inbox.free_blocks, inbox.queued = free, len(pending)
                if not pending:
                    yield None
                    continue
                yield Wait(pending[0][0] - t)
                continue
            # -------- a run of identical decode steps, when nothing can change before an event
            n = len(running)
            # (a sequence whose prompt a chunk left one token short of complete takes that token in
            # a step of its own: its first token's time is that step's end)
            if (running and not pending and (inbox is None or self.inbox_jumps)
                    and all(s.computed == s.prompt + s.generated - 1 and s.generated > 0 for s in running)
                    and n <= self.max_num_batched_tokens
                    and (not waiting or n >= self.max_num_seqs or n == self.max_num_batched_tokens
                         or _blocks(waiting[0].num_tokens, B) > free - self._run_blocks(running, 1))):
                steps = min(s.target - s.generated for s in running)
                steps = min(steps, self._max_steps(running, free, steps))
                if inbox is not None and inbox.watch:   # stop where a watched request reports progress
                    for s in running:
                        w = inbox.watch.get(s.rid)
                        if w is not None:
                            steps = min(steps, max(1, w[1] - s.generated))
                if steps >= 2:
                    ctx = sum(s.num_tokens for s in running)
                    dur = self.cost.decode_run_s(n, ctx, steps)
                    if inbox is None:
                        yield Step(dur, n)
                    else:
                        inbox.free_blocks, inbox.queued = free - self._run_blocks(running, steps), \
                            len(waiting) + len(pending)
                        # an arrival may cut the run short: the caller says how many steps ran
                        taken = yield Jump(dur, n, steps, lambda k, n=n, ctx=ctx: self.cost.decode_run_s(n, ctx, k))
                        if taken is not None and taken < steps:
                            steps = taken
                            dur = self.cost.decode_run_s(n, ctx, steps)
                    if self.record_steps:
                        self.steps_log.append(StepRecord(tuple((s.rid, 1) for s in running), (), dur, steps))
                    res.steps += steps
                    t1 = now()
                    take(self._run_blocks(running, steps))
                    for s in running:
                        s.blocks = _blocks(s.num_tokens + steps - 1, B)
                        s.computed += steps
                        s.generated += steps
                    if inbox is None:
                        free += self._retire(running, free_q, t1)
                    else:
                        before = list(running)
                        free += self._retire(running, free_q, t1, keyed)
                        inbox.finished.extend(s for s in before if s.finish == t1 and s.generated >= s.target)
                        for s in before:
                            w = inbox.watch.get(s.rid)
                            if w is not None and s.finish is None and s.generated >= w[1]:
                                inbox.progress.append((s.rid, s.generated))
                                w[1] = s.generated + w[0]
                    continue
            # -------- one step
            budget = self.max_num_batched_tokens
            scheduled: list[tuple[V1Seq, int]] = []
            preempted: list[V1Seq] = []
            i = 0
            while i < len(running) and budget > 0:
                s = running[i]
                new = min(s.num_tokens - s.computed, budget)
                need = _blocks(s.computed + new, B) - s.blocks
                while need > free:
                    victim = running.pop()
                    preempt(victim)
                    preempted.append(victim)
                    if victim is s:
                        break
                if s in preempted:
                    break
                take(need)
                s.blocks += need
                scheduled.append((s, new))
                budget -= new
                i += 1
            if not preempted:
                while budget > 0 and waiting and len(running) < self.max_num_seqs:
                    s = waiting[0]
                    if _blocks(s.num_tokens, B) > free:   # the whole sequence must fit to be admitted
                        break
                    waiting.popleft()
                    reuse_cached(s)
                    new = min(s.num_tokens - s.computed, budget)
                    need = _blocks(s.computed + new, B) - s.blocks
                    take(need)
                    s.blocks += need
                    running.append(s)
                    scheduled.append((s, new))
                    budget -= new
            if not scheduled:
                raise RuntimeError("engine stalled: a sequence cannot fit the KV cache")  # pragma: no cover
            tokens = sum(k for _, k in scheduled)
            decode_ctx = sum(s.computed + 1 for s, k in scheduled if s.computed == s.num_tokens - 1)
            attn = float(sum((s.computed + k) ** 2 - s.computed ** 2
                             for s, k in scheduled if s.computed != s.num_tokens - 1))
            t0 = now()
            dur = self.cost.step_s(tokens, len(scheduled), decode_ctx, attn)
            if self.record_steps:
                self.steps_log.append(StepRecord(tuple((s.rid, k) for s, k in scheduled),
                                                 tuple(v.rid for v in preempted), dur))
            res.steps += 1
            if inbox is not None:
                inbox.free_blocks, inbox.queued = free, len(waiting) + len(pending)
            yield Step(dur, len(scheduled))
            t1 = now()
            for s, k in scheduled:
                if s.start is None:
                    s.start = t0
                s.computed += k
                if s.computed >= s.num_tokens:   # prompt complete (or a decode step): a token
                    s.generated += 1
                    if s.first_token is None:
                        s.first_token = t1
            free += self._retire(running, free_q, t1, keyed)
            if inbox is not None:
                inbox.finished.extend(s for s, _ in scheduled if s.finish == t1 and s.generated >= s.target)
                for s, _ in scheduled:
                    w = inbox.watch.get(s.rid)
                    if w is not None and s.finish is None and s.generated >= w[1]:
                        inbox.progress.append((s.rid, s.generated))
                        w[1] = s.generated + w[0]
        return res

    def _take(self, inbox: Inbox, seqs: list, waiting: deque, running: list, pending: deque,
              release: Callable, t: float) -> None:
        """Between steps: the inbox's new requests join the queue, each after the client has handed
        it over (submit_s, one at a time, while the engine goes on stepping); cancelled ones leave
        the queue, or the batch, their KV blocks freed (never reused: a cancelled request does not
        come back)."""
        while inbox.arrivals:
            rid, prompt, target, *key = inbox.arrivals.popleft()
            s = V1Seq(rid, prompt, target, key=key[0] if key else None)
            seqs.append(s)
            if self.submit_s > 0:
                pending.append((max(t, pending[-1][0] if pending else t) + self.submit_s, s))
            else:
                waiting.append(s)
        if inbox.cancels:
            gone = inbox.cancels
            inbox.cancels = set()
            for p in [p for p in pending if p[1].rid in gone]:
                pending.remove(p)
                p[1].cancelled = True
                inbox.finished.append(p[1])
            for queue in (waiting, running):
                for s in [s for s in queue if s.rid in gone]:
                    queue.remove(s)
                    release(s, keep_cached=False)
                    s.cancelled = True
                    inbox.finished.append(s)

    def _retire(self, running: list[V1Seq], free_q: deque, t: float, keyed: dict | None = None) -> int:
        """Finished requests leave and their blocks return to the free queue (unowned: prompts are
        unique, so nothing will hit them again; a request with a prefix key leaves its full blocks
        cached under the key, for the next request of that prefix). Returns the blocks freed."""
        freed = 0
        done = [s for s in running if s.generated >= s.target]
        for s in done:
            s.finish = t
            if self._done is not None:
                self._done(s.rid, t)
            cached = min(s.computed // self.block_size, s.blocks) if s.key is not None and keyed is not None else 0
            if s.blocks - cached:
                free_q.append([None, s.blocks - cached])
            if cached:
                old = keyed.get(s.key)
                if old is not None:
                    old[0] = None   # an older, shorter prefix of the same key: plain free blocks now
                seg = [s.key, cached]
                free_q.append(seg)
                keyed[s.key] = seg
            freed += s.blocks
            s.blocks = 0
        if done:
            running[:] = [s for s in running if s.finish is None]
        return freed

    def _run_blocks(self, running: list[V1Seq], steps: int) -> int:
        """New blocks a run of `steps` decode steps takes: the last step writes KV at num_tokens +
        steps - 1 tokens."""
        B = self.block_size
        last = steps + B - 2   # ceil((num_tokens + steps - 1) / B), inlined: the engine's hottest loop
        out = 0
        for s in running:
            d = (s.prompt + s.generated + last) // B - s.blocks
            if d > 0:
                out += d
        return out

    def _max_steps(self, running: list[V1Seq], free: int, limit: int) -> int:
        """The longest run (<= limit) whose new blocks fit in `free` (blocks needed grow with steps);
        any value below 2 where not even 2 steps fit (the caller then takes a single step)."""
        if limit < 2 or self._run_blocks(running, 2) > free:   # KV-tight: the usual case there, one pass
            return min(limit, 1)
        if self._run_blocks(running, limit) <= free:
            return limit
        lo, hi = 2, limit - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._run_blocks(running, mid) <= free:
                lo = mid
            else:
                hi = mid - 1
        return lo
