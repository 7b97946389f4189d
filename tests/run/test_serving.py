"""Serving metrics: TTFT, TPOT and latency from each request's own session start; queries done."""
import pytest

from mosaic.run.serving import query_completion, stage_serving
from mosaic.trace import RequestRecord, SessionRecord, assemble_trace


def rec(rid, worker, session, start, first, finish, out, error=None):
    q = rid.split("/")[0]
    return RequestRecord(rid, q, "m", "expert", worker, session, start, first, finish, 10, out, "A", error)


def sess(worker, index, load_start, run_start, run_end, n):
    return SessionRecord(worker, index, "m", load_start, run_start, run_start, run_end, n)


def stage():
    # Worker 0: a session loaded 0-10 s serving q0 and q1; worker 1: a second session starting at 50 s.
    sessions = [sess(0, 0, 0.0, 10.0, 30.0, 2), sess(1, 0, 0.0, 5.0, 20.0, 1), sess(1, 1, 20.0, 50.0, 70.0, 2)]
    requests = [rec("q0/m", 0, 0, 10.0, 12.0, 22.0, 11),     # TTFT 2, latency 12, TPOT 1.0
                rec("q1/m", 0, 0, 10.0, 14.0, 30.0, 5),      # TTFT 4, latency 20, TPOT 4.0
                rec("q2/m", 1, 0, 5.0, 6.0, 20.0, 1),        # TTFT 1, latency 15, no TPOT (one token)
                rec("q3/m", 1, 1, 50.0, 53.0, 70.0, 18),     # TTFT 3, latency 20, TPOT 1.0
                rec("q4/m", 1, 1, 50.0, 0.0, 0.0, 0, error="engine died")]
    return assemble_trace("expert", "sim", requests, sessions, [0, 1])


def test_latencies_are_timed_from_the_requests_session_start():
    s = stage_serving(stage(), n_gpus=2)
    assert s["requests"] == 5 and s["failed"] == 1
    assert s["ttft_s"]["mean"] == pytest.approx((2 + 4 + 1 + 3) / 4)
    assert s["ttft_s"]["p50"] == pytest.approx(2.5)
    assert s["latency_s"]["mean"] == pytest.approx((12 + 20 + 15 + 20) / 4)
    assert s["latency_s"]["p99"] == pytest.approx(20.0)
    assert s["tpot_s"]["mean"] == pytest.approx((1.0 + 4.0 + 1.0) / 3)
    assert s["output_tokens"] == 11 + 5 + 1 + 18
    assert s["output_tokens_per_s_per_gpu"] == pytest.approx(35 / 70.0 / 2)


def test_an_empty_stage_has_no_latencies():
    s = stage_serving(assemble_trace("aggregator", "sim", [], [], [0]), n_gpus=1)
    assert s["requests"] == 0 and s["latency_s"]["p50"] is None and s["output_tokens_per_s_per_gpu"] is None


def test_a_query_is_done_after_its_last_expert_or_after_its_aggregator():
    expert = stage()
    agg = assemble_trace("aggregator", "sim", [rec("q1/agg", 0, 0, 1.0, 2.0, 9.0, 8)],
                         [sess(0, 0, 0.0, 1.0, 9.0, 1)], [0, 1])
    done = query_completion(expert, agg, {"q0": True, "q1": False, "q3": True})
    # q0: its expert finished at 22; q1: expert stage (70 s) + 9; q3: 70.
    assert done["mean"] == pytest.approx((22 + 79 + 70) / 3)
    assert done["p50"] == pytest.approx(70.0)


def test_a_query_whose_requests_failed_has_no_final_answer_and_is_left_out():
    """Counted as done at its failed request's time before (an all-failed run: "query done" 0.2 s)."""
    expert = stage()   # q4's only expert request failed
    agg = assemble_trace("aggregator", "sim", [rec("q1/agg", 0, 0, 1.0, 2.0, 9.0, 8),
                                               rec("q3/agg", 0, 0, 1.0, 0.0, 0.0, 0, error="engine died")],
                         [sess(0, 0, 0.0, 1.0, 9.0, 2)], [0, 1])
    done = query_completion(expert, agg, {"q0": True, "q1": False, "q3": False, "q4": True})
    # q0 at 22, q1 at 70 + 9; q3's aggregator failed and q4's expert failed: no answer
    assert done["mean"] == pytest.approx((22 + 79) / 2)
    nothing = query_completion(expert, agg, {"q3": False, "q4": True})
    assert nothing["p50"] is None


def test_the_run_summary_carries_serving_metrics(tmp_path):
    from mosaic.run.builder import build_run, compose

    out = build_run(compose(["workload.n_queries=40", "cluster.n_workers=2"])).execute()
    from mosaic.run.metrics import summary

    s = summary(out, "engine_aware", "sim", "synth_mmlu_pro", 0)["serving"]
    e = s["expert"]
    assert e["requests"] == len(out.expert.trace.requests) and e["failed"] == 0
    assert 0 < e["ttft_s"]["p50"] <= e["latency_s"]["p50"] <= e["latency_s"]["p99"] <= out.expert.trace.makespan_s
    assert s["query_completion_s"]["p99"] <= out.expert.trace.makespan_s + out.aggregator.trace.makespan_s + 1e-9
