from mosaic.plan import Plan, Session, SolverInfo, WorkerPlan
from mosaic.trace import RequestRecord, SessionRecord, Trace, WorkerStats
from mosaic.workload.answer_model import SyntheticSpec
from mosaic.workload.sources.synthetic import generate
from mosaic.workload.types import Workload


def test_plan_round_trip():
    p = Plan("expert", "ilp", (WorkerPlan(0, (Session("A", ("q1/A", "q2/A")),), 12.5), WorkerPlan(1, (), 0.0)),
             SolverInfo("optimal", 0.1, 12.5, 12.4, 0.008), {"K": 3})
    assert Plan.from_json(p.to_json()) == p


def test_trace_round_trip():
    t = Trace("expert", "sim", 10.0,
              (RequestRecord("q/A", "q", "A", "expert", 0, 0, 1.0, 2.0, 3.0, 10, 20, "B"),),
              (SessionRecord(0, 0, "A", 0.0, 1.0, 1.0, 10.0, 1),),
              (WorkerStats(0, 10.0, 0.0),))
    assert Trace.from_json(t.to_json()) == t


def test_workload_round_trip(profiles):
    w = generate(SyntheticSpec(n_queries=20), profiles, seed=3)
    back = Workload.from_json(w.to_json())
    assert back == w
    assert back.expert_requests() == w.expert_requests()


def test_non_finite_floats_are_written_as_strings_and_read_back_as_floats():
    import json
    import math

    from mosaic.core import serde
    doc = serde.strict_json({"a": math.inf, "b": [-math.inf, math.nan, 1.5], "c": "x"})
    assert doc == {"a": "inf", "b": ["-inf", "nan", 1.5], "c": "x"}
    json.dumps(doc, allow_nan=False)   # strict JSON: no bare Infinity/NaN
    info = serde.from_dict(SolverInfo, {"status": "optimal", "solve_s": "inf", "objective": 1.0,
                                        "bound": "-inf", "gap": 0.0})
    assert info.solve_s == math.inf and info.bound == -math.inf


def test_tables_round_trip_as_written_text(tmp_path):
    from mosaic.core.tables import read_csv, write_csv

    rows = [{"a": 1, "b": None, "c": 0.1 + 0.2, "d": True, "e": 'say "hi", then\nleave'}, {"a": 2, "c": 1e-07}]
    write_csv(tmp_path / "t" / "x.csv", rows, ["a", "b", "c", "d", "e"])
    text = (tmp_path / "t" / "x.csv").read_text()
    assert text.splitlines()[1].startswith("1,,0.30000000000000004,True,")   # ints stay ints, None is empty
    assert "\r" not in text
    back = read_csv(tmp_path / "t" / "x.csv")
    assert back == [{"a": "1", "b": "", "c": "0.30000000000000004", "d": "True", "e": 'say "hi", then\nleave'},
                    {"a": "2", "b": "", "c": "1e-07", "d": "", "e": ""}]
    write_csv(tmp_path / "empty.csv", [])
    assert read_csv(tmp_path / "empty.csv") == []
