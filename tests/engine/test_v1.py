"""The V1 engine's step schedule against hand-computed ones (token budget, chunked prefill, mixing,
block-granular KV, preemption order, prefix-cache reuse on resume), and its decode-run jumps
against stepping one step at a time."""
import random

import pytest

from mosaic.engine import CostModel
from mosaic.engine.v1 import V1Engine
from tests.helpers import UnitCost, drive


def schedule(engine):
    return [(dict(r.scheduled), set(r.preempted), r.repeat) for r in engine.steps_log]


def test_chunked_prefill_shares_the_token_budget_with_decodes():
    # block 4, budget 8, 3 slots. Step 1: a's whole prompt (6) and a 2-token chunk of b fill the
    # budget. Step 2: a decodes (1), b finishes its prompt (3), c is admitted with 4 (budget 8 again).
    # Step 3: all decode; a and c finish. Then b alone: 2 decode steps in one jump.
    eng = V1Engine(UnitCost(), kv_blocks=10, block_size=4, max_num_seqs=3, max_num_batched_tokens=8,
                   record_steps=True)
    seqs, end = drive(eng, [("a", 6, 3), ("b", 5, 4), ("c", 4, 2)])
    assert schedule(eng) == [({"a": 6, "b": 2}, set(), 1),
                             ({"a": 1, "b": 3, "c": 4}, set(), 1),
                             ({"a": 1, "b": 1, "c": 1}, set(), 1),
                             ({"b": 1}, set(), 2)]
    assert end == 5.0 and eng.result.steps == 5
    assert (seqs["a"].first_token, seqs["b"].first_token, seqs["c"].first_token) == (1.0, 2.0, 2.0)
    assert (seqs["a"].finish, seqs["b"].finish, seqs["c"].finish) == (3.0, 5.0, 3.0)
    assert (seqs["a"].start, seqs["b"].start, seqs["c"].start) == (0.0, 0.0, 1.0)
    assert eng.result.preemptions == 0


def test_a_prompt_one_token_past_its_chunks_gets_its_first_token_in_a_step_of_its_own():
    # budget 4, prompt 9: chunks of 4 and 4 leave the prompt's last token, which looks like a
    # decode; it went into a decode jump that never recorded the first token (a profile with a
    # small token budget ended in a TypeError). Now: its own step, then the jump.
    eng = V1Engine(UnitCost(), kv_blocks=10, block_size=4, max_num_seqs=1, max_num_batched_tokens=4,
                   record_steps=True)
    seqs, end = drive(eng, [("a", 9, 3)])
    assert schedule(eng) == [({"a": 4}, set(), 1), ({"a": 4}, set(), 1), ({"a": 1}, set(), 1), ({"a": 1}, set(), 2)]
    assert (seqs["a"].start, seqs["a"].first_token, seqs["a"].finish, end) == (0.0, 3.0, 5.0, 5.0)


def test_preemption_takes_the_last_admitted_and_resume_reuses_surviving_cached_blocks():
    # 4 blocks of 4 tokens. Step 1 admits a, b, c (one block each). Step 2: a takes the last free
    # block; b needs one, so c (last admitted) is preempted and its cached block is reused by b at
    # once. Steps 3-5: a and b decode inside their two blocks (a jump of 3). Step 6: a needs a third
    # block: b is preempted (2 cached blocks queued tail first); a takes b's second block and
    # finishes. Step 7: b resumes ahead of c, reusing its surviving first block (4 tokens) and
    # recomputing 5; c cannot fit beside it. Step 8: c recomputes 5 tokens (its cache was reused).
    eng = V1Engine(UnitCost(), kv_blocks=4, block_size=4, max_num_seqs=4, max_num_batched_tokens=16,
                   record_steps=True)
    seqs, end = drive(eng, [("a", 4, 6), ("b", 4, 6), ("c", 4, 2)])
    assert schedule(eng) == [({"a": 4, "b": 4, "c": 4}, set(), 1),
                             ({"a": 1, "b": 1}, {"c"}, 1),
                             ({"a": 1, "b": 1}, set(), 3),
                             ({"a": 1}, {"b"}, 1),
                             ({"b": 5}, set(), 1),
                             ({"c": 5}, set(), 1)]
    assert (seqs["a"].finish, seqs["b"].finish, seqs["c"].finish) == (6.0, 7.0, 8.0)
    assert eng.result.preemptions == 2 and eng.result.steps == 8
    assert all(s.first_token == 1.0 for s in seqs.values())   # recomputation emits no new first token


def test_without_prefix_caching_a_resumed_request_recomputes_everything():
    eng = V1Engine(UnitCost(), kv_blocks=4, block_size=4, max_num_seqs=4, max_num_batched_tokens=16,
                   prefix_caching=False, record_steps=True)
    drive(eng, [("a", 4, 6), ("b", 4, 6), ("c", 4, 2)])
    assert schedule(eng)[4] == ({"b": 9}, set(), 1)


def test_admission_needs_the_whole_sequence_to_fit_and_a_free_slot():
    # b's prompt needs 3 blocks; with a holding 2 of 4 it waits although its first chunk would fit.
    eng = V1Engine(UnitCost(), kv_blocks=4, block_size=4, max_num_seqs=4, max_num_batched_tokens=4,
                   record_steps=True)
    drive(eng, [("a", 7, 2), ("b", 12, 1)])
    log = schedule(eng)
    assert log[0] == ({"a": 4}, set(), 1) and log[1] == ({"a": 3}, set(), 1)
    assert "b" not in log[2][0]
    # one slot: the second request waits for the first to finish
    eng = V1Engine(UnitCost(), kv_blocks=100, block_size=4, max_num_seqs=1, max_num_batched_tokens=64,
                   record_steps=True)
    seqs, _ = drive(eng, [("a", 4, 3), ("b", 4, 1)])
    assert seqs["b"].start == seqs["a"].finish


class OneStepAtATime(V1Engine):
    def _max_steps(self, running, free, limit):
        return min(limit, 1)


@pytest.mark.parametrize("seed", range(12))
def test_decode_jumps_match_stepping_one_step_at_a_time(profiles, seed):
    rng = random.Random(seed)
    cost = CostModel(profiles.model("LlamaR1"), profiles.engine)
    reqs = [(f"r{i}", rng.randint(1, 300), rng.randint(1, 400)) for i in range(rng.randint(1, 40))]
    kw = dict(kv_blocks=rng.choice([30, 80, 400]), block_size=rng.choice([4, 16]),
              max_num_seqs=rng.choice([4, 16, 64]), max_num_batched_tokens=rng.choice([256, 512, 2048]),
              prefix_caching=rng.random() < 0.5)
    if kw["kv_blocks"] * kw["block_size"] < 700:
        kw["kv_blocks"] = 700 // kw["block_size"] + 1        # every request must fit alone
    fast, t_fast = drive(V1Engine(cost, **kw), reqs)
    slow, t_slow = drive(OneStepAtATime(cost, **kw), reqs)
    assert t_fast == pytest.approx(t_slow, rel=1e-9)
    for rid in fast:
        assert fast[rid].finish == pytest.approx(slow[rid].finish, rel=1e-9)
        assert fast[rid].first_token == pytest.approx(slow[rid].first_token, rel=1e-9)
        assert fast[rid].generated == fast[rid].target


def test_every_request_finishes_with_its_output_under_kv_pressure(profiles):
    cost = CostModel(profiles.model("QwenR1"), profiles.engine)
    reqs = [(f"r{i}", 100 + 37 * i % 300, 50 + 91 * i % 600) for i in range(60)]
    eng = V1Engine(cost, kv_blocks=120, block_size=16, max_num_seqs=32, max_num_batched_tokens=512)
    seqs, _ = drive(eng, reqs)
    assert eng.result.preemptions > 0
    assert all(s.generated == s.target and s.finish >= s.first_token >= s.start for s in seqs.values())


def test_requests_handed_over_one_by_one_join_between_steps():
    # a arrives at 0.5 s, b at 1.0 s: the engine idles until a, steps on a alone, and admits b
    # at the next step boundary (1.5 s), where a decodes beside b's prefill.
    eng = V1Engine(UnitCost(), kv_blocks=10, block_size=4, max_num_seqs=4, max_num_batched_tokens=16,
                   submit_s=0.5, record_steps=True)
    seqs, end = drive(eng, [("a", 4, 2), ("b", 4, 2)])
    assert schedule(eng) == [({"a": 4}, set(), 1), ({"a": 1, "b": 4}, set(), 1), ({"b": 1}, set(), 1)]
    assert (seqs["a"].start, seqs["a"].finish, seqs["b"].start, seqs["b"].finish) == (0.5, 2.5, 1.5, 3.5)
    assert end == 3.5 and eng.result.steps == 3


def drive_inbox(eng, plan):
    """Run an engine fed through an Inbox: plan = [(time, (id, prompt, output[, key]))], each
    handed over at its time (unit step costs: time = steps). Returns the requests by id."""
    from mosaic.engine.v1 import Inbox

    inbox, clock, todo = Inbox(), [0.0], sorted(plan, key=lambda p: p[0])
    gen = eng.run([], lambda: clock[0], inbox)
    for dur in gen:
        while todo and todo[0][0] <= clock[0]:
            inbox.arrivals.append(todo.pop(0)[1])
        if dur is None:   # idle: the next arrival, if nothing just arrived; else the end
            if not inbox.arrivals:
                if not todo:
                    inbox.closed = True
                    continue
                clock[0] = todo[0][0]
            continue
        clock[0] += dur
    return {s.rid: s for s in eng.result.seqs}


def test_a_prefill_only_kin_request_leaves_its_prefix_cached_for_the_real_one():
    # block 4. At 0, "s#1" (prompt 10, 1 token, key s) is prefilled in one step and leaves its two
    # full blocks (8 tokens) cached under s. At 3, "s" (prompt 13, key s) reuses them: it prefills
    # only 5 tokens. A request of another key (or none) reuses nothing.
    eng = V1Engine(UnitCost(), kv_blocks=20, block_size=4, max_num_seqs=4, max_num_batched_tokens=64,
                   record_steps=True)
    seqs = drive_inbox(eng, [(0.0, ("s#1", 10, 1, "s")), (3.0, ("s", 13, 2, "s")), (3.0, ("t", 13, 2, "t"))])
    assert schedule(eng)[0] == ({"s#1": 10}, set(), 1)
    assert schedule(eng)[1] == ({"s": 5, "t": 13}, set(), 1)
    assert (seqs["s"].cache_hit, seqs["t"].cache_hit) == (8, 0)
    assert (seqs["s"].start, seqs["s"].finish) == (3.0, 5.0)


def test_arrivals_through_the_inbox_are_handed_over_one_at_a_time_while_the_engine_steps():
    # submit_s 0.25 (unit step costs): a, b, c reach the inbox at 0; the client hands them over one
    # by one (a at 0.25, b at 0.5, c at 0.75) and the engine steps on what it has: a alone from
    # 0.25, then b and c join a's decode at the boundary 1.25. (Before: graph arrivals took no
    # hand-over time; all three were prefilled at 0.)
    eng = V1Engine(UnitCost(), kv_blocks=20, block_size=4, max_num_seqs=4, max_num_batched_tokens=64,
                   submit_s=0.25, record_steps=True)
    seqs = drive_inbox(eng, [(0.0, ("a", 4, 3)), (0.0, ("b", 4, 3)), (0.0, ("c", 4, 1))])
    assert (seqs["a"].start, seqs["b"].start, seqs["c"].start) == (0.25, 1.25, 1.25)
    assert schedule(eng)[:2] == [({"a": 4}, set(), 1), ({"a": 1, "b": 4, "c": 4}, set(), 1)]
    assert (seqs["a"].finish, seqs["b"].finish, seqs["c"].finish) == (3.25, 4.25, 2.25)


def test_a_request_cancelled_while_being_handed_over_never_runs():
    from mosaic.engine.v1 import Inbox

    eng = V1Engine(UnitCost(), kv_blocks=20, block_size=4, max_num_seqs=4, max_num_batched_tokens=64,
                   submit_s=0.25, record_steps=True)
    inbox, clock = Inbox(), [0.0]
    inbox.arrivals.extend([("x", 4, 1), ("y", 4, 1)])
    gen = eng.run([], lambda: clock[0], inbox)
    assert next(gen) == 0.25                    # waiting for x's hand-over; y's comes after it
    inbox.cancels.add("y")
    clock[0] = 0.25
    assert next(gen) == 1.0                     # x's step; y left the hand-over queue
    assert [(s.rid, s.cancelled) for s in inbox.finished] == [("y", True)]
    inbox.closed = True
    clock[0] = 1.25
    assert list(gen) == [] and [r for step in schedule(eng) for r in step[0]] == ["x"]
