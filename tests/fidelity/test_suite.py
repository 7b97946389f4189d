"""The fidelity suite's maths and case handling (no engine started: the real side is a stand-in)."""
from pathlib import Path

import pytest

from mosaic.fidelity import suite as fidelity
from mosaic.core.errors import ConfigError
from mosaic.trace import RequestRecord, SessionRecord, Trace, WorkerStats


def _trace(finish, makespan, first=10.5, preemptions=0):
    reqs = tuple(RequestRecord(f"r{i}", "q", "A", "expert", 0, 0, 10.0, first, f, 5, 7, None)
                 for i, f in enumerate(finish))
    return Trace("expert", "x", makespan, reqs,
                 (SessionRecord(0, 0, "A", 2.0, 10.0, 10.0, makespan, len(finish), preemptions),),
                 (WorkerStats(0, makespan, 0.0),))


def test_stage_metrics_measure_serving_latency_and_throughput():
    m = fidelity.stage_metrics(_trace([12.0, 14.0], 14.0, preemptions=3))
    assert m["serving_s"] == 4.0 and m["mean_load_s"] == 8.0 and m["makespan_s"] == 14.0
    assert m["e2e_p50_s"] == pytest.approx(3.0) and m["e2e_p99_s"] == pytest.approx(3.98)
    assert m["ttft_p50_s"] == pytest.approx(0.5)
    assert m["throughput_tok_s"] == pytest.approx(14 / 14.0)
    assert m["preemptions"] == 3 and m["failed"] == 0


def test_compare_reports_real_median_spread_and_sim_error():
    sim = fidelity.stage_metrics(_trace([12.0, 14.0], 14.0))
    reals = [fidelity.stage_metrics(_trace([12.0, f], f)) for f in (15.0, 16.0, 14.5)]
    c = fidelity.compare(sim, reals)
    assert c["real_median"]["makespan_s"] == 15.0
    assert c["real_spread"]["makespan_s"] == pytest.approx((16.0 - 14.5) / 2 / 15.0)
    assert c["error"]["makespan_s"] == pytest.approx(-1 / 15)
    assert c["error"]["serving_s"] == pytest.approx((4.0 - 5.0) / 5.0)


def test_traces_of_different_plans_are_refused():
    with pytest.raises(ValueError, match="same plan"):
        fidelity.same_requests(_trace([1.0], 1.0), _trace([1.0, 2.0], 2.0))


def test_the_committed_suite_loads_and_its_serving_cases_plan_every_request():
    suite = fidelity.load_suite()
    assert suite.repeats >= 3 and "smoke" in suite.cases
    case = suite.cases["skewed_plan"]
    run, jobs = fidelity.prepare_case("skewed_plan", case, suite.base[:0] + ["workload=smoke", "models=tiny",
                                                                              "cluster=cpu2"])
    (job, simulated), = jobs
    assert len(job.requests) == sum(s.requests for s in case.sessions) == len(simulated.requests)
    sessions = {(w.worker, s.model): len(s.request_ids) for w in job.plan.workers for s in w.sessions}
    assert sessions == {(s.worker, s.model): s.requests for s in case.sessions}
    lo, hi = case.sessions[0].output
    assert all(lo <= o.output_tokens <= hi for rid, o in job.replay.items() if job.requests[rid].model == "LlamaR1")
    # Same seed, same lengths.
    _, again = fidelity.prepare_case("skewed_plan", case, ["workload=smoke", "models=tiny", "cluster=cpu2"])
    assert again[0][0].replay == job.replay and again[0][1].makespan_s == simulated.makespan_s


@pytest.mark.parametrize("text, match", [
    ("cases: {a: {stages: [expert], sessions: []}}", "exactly one of"),
    ("cases: {a: {stages: [aggregator]}}", r"cases\.a\.stages"),
    ("cases: {a: {sessions: [{worker: 0, model: Qwen, requests: 2, prompt: [5, 1], output: [1, 2]}]}}",
     r"cases\.a\.sessions\.0\.prompt"),
    ("cases: {a: {sesions: []}}", r"cases\.a\.sesions"),
    ("repeats: 0\ncases: {}", "repeats"),
    ("cases: [", "not valid YAML"),
])
def test_bad_suite_files_say_which_field(tmp_path: Path, text, match):
    p = tmp_path / "suite.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match):
        fidelity.load_suite(p)


def test_a_case_that_cannot_run_is_refused_before_any_engine(tmp_path: Path):
    p = tmp_path / "suite.yaml"
    p.write_text("base: [workload=smoke, models=tiny, cluster=cpu2]\ncases:\n"
                 "  ok: {sessions: [{worker: 0, model: Qwen, requests: 2, prompt: [5, 9], output: [3, 4]}]}\n"
                 "  bad: {sessions: [{worker: 5, model: Qwen, requests: 2, prompt: [5, 9], output: [3, 4]}]}\n")
    ran = []
    with pytest.raises(ConfigError, match=r"fidelity case bad: sessions\[0\]\.worker=5"):
        fidelity.write(tmp_path, p, log=ran.append)
    assert ran == [] and not (tmp_path / "fidelity.md").exists()
    with pytest.raises(ConfigError, match="no case named nope"):
        fidelity.write(tmp_path, p, only=["nope"])


@pytest.mark.vllm
def test_the_suite_runs_a_case_on_real_engines_and_counts_their_preemptions(tmp_path: Path):
    p = tmp_path / "suite.yaml"
    # 17 blocks of 128 tokens (the least a 2048 context allows) for 6 sequences of ~900 tokens:
    # the engine must preempt; its statistics are on so the worker can count them.
    p.write_text("base: [workload=smoke, models=tiny, backend=vllm, cluster=cpu2]\nrepeats: 1\ncases:\n"
                 "  tight: {overrides: [engine.num_gpu_blocks=17, models.engine.disable_log_stats=false],\n"
                 "          sessions: [{worker: 0, model: Qwen, requests: 6, prompt: [600, 700], output: [150, 200]}]}\n")
    md = fidelity.write(tmp_path, p, log=print, check="each")
    # the host checked on the same engines first (the calibration's batches): Qwen's batches
    # re-measured against tiny_cpu, on each worker
    (check,) = __import__("json").loads((tmp_path / "fidelity.profile_check.json").read_text())
    assert list(check["models"]) == ["Qwen"] and check["models"]["Qwen"]["ratio"] > 0
    assert set(check["models"]["Qwen"]["workers"]) == {"0", "1"}
    assert md.index("Profile check") < md.index("| case |")
    (row,) = __import__("json").loads((tmp_path / "fidelity.json").read_text())
    assert row["case"] == "tight" and row["sim"]["requests"] == 6 and row["real"][0]["failed"] == 0
    assert row["sim"]["preemptions"] > 0 and row["real"][0]["preemptions"] > 0
    assert "| tight | expert | 6 |" in md
    # and simulated again on the profile calibrated by that check: the same plan, the host's speed
    assert row["corrected"]["sim"]["requests"] == 6 and row["corrected"]["sim"]["preemptions"] > 0
    assert "| tight | expert | " in md.split("Drift-corrected")[1]


def _one_case_suite(tmp_path: Path, monkeypatch) -> Path:
    """A one-case suite file whose real side stands in for vLLM: the simulator's own trace."""
    p = tmp_path / "suite.yaml"
    p.write_text("base: [workload=smoke, models=tiny, cluster=cpu2]\nrepeats: 1\ncases:\n"
                 "  a: {sessions: [{worker: 0, model: Qwen, requests: 2, prompt: [5, 9], output: [3, 4]}]}\n")
    monkeypatch.setattr(fidelity, "run_case", lambda name, run, jobs, repeats, log=print: [
        {"case": name, "stage": job.stage, **fidelity.compare(fidelity.stage_metrics(t), [fidelity.stage_metrics(t)])}
        for job, t in jobs])
    return p


def test_a_subset_of_cases_writes_its_own_files(tmp_path: Path, monkeypatch):
    p = _one_case_suite(tmp_path, monkeypatch)
    (tmp_path / "fidelity.md").write_text("the whole suite\n")
    md = fidelity.write(tmp_path, p, only=["a"], check="off")
    assert (tmp_path / "fidelity.md").read_text() == "the whole suite\n"
    assert (tmp_path / "fidelity-a.md").read_text() == md and "| a | expert | 2 |" in md
    assert "+0.0%" in md and "yes yes yes" in md
    # another suite file and folder are part of the command that regenerates this report
    assert f"Regenerate: `python experiments/fidelity.py --case a --profile-check off --suite {p} --out {tmp_path}`" in md
    assert f"(cases: {p};" in md


def _suite_with_fake_engines(tmp_path: Path, monkeypatch, ratio: float):
    """A one-case suite whose real side is the simulator's trace, and whose profile check measures
    `ratio` x the profile's prediction."""
    p = tmp_path / "suite.yaml"
    p.write_text("base: [workload=smoke, models=tiny, cluster=cpu2]\nrepeats: 1\ncases:\n"
                 "  a: {sessions: [{worker: 0, model: Qwen, requests: 2, prompt: [5, 9], output: [3, 4]},\n"
                 "                 {worker: 1, model: GLM, requests: 2, prompt: [5, 9], output: [3, 4]}]}\n")
    ran = []
    monkeypatch.setattr(fidelity, "run_case", lambda name, run, jobs, repeats, log=print: ran.append(name) or [
        {"case": name, "stage": job.stage, **fidelity.compare(fidelity.stage_metrics(t), [fidelity.stage_metrics(t)])}
        for job, t in jobs])
    from mosaic.fidelity import profile_check

    checked = []

    def check(cfg):
        checked.append(cfg)
        models = {n: {"ratio": ratio, "spread": 0.02, "cells": {}, "load_s": 14.0, "profile_load_s": 13.0,
                      "engine": []} for n in cfg["model"].split(",")}
        ok, why = profile_check.verdict(models, cfg["tolerance"])
        path = profile_check._profile_path(cfg["profile"]).relative_to(fidelity.ROOT)
        return {"profile": str(path), "when": "now", "tolerance": cfg["tolerance"], "models": models,
                "matches": ok, "reasons": why}

    monkeypatch.setattr(profile_check, "check_profile", check)
    return p, ran, checked


def test_a_stale_profile_stops_the_suite_before_any_real_run(tmp_path: Path, monkeypatch):
    p, ran, checked = _suite_with_fake_engines(tmp_path, monkeypatch, ratio=2.5)
    with pytest.raises(ConfigError, match=r"does not describe this machine.*GLM: 2\.50x.*profile_models\.py "
                                          r"model=all out=mosaic/profiles/data/tiny_cpu\.yaml.*--profile-check warn"):
        fidelity.write(tmp_path, p)
    # the plan's models, on the run's own registry and workers, against the run's profile
    (cfg,) = checked
    assert cfg["model"] == "GLM,Qwen" and cfg["profile"] == "tiny_cpu" and cfg["n_workers"] == 2
    assert "Qwen" in cfg["models"]["models"] and cfg["tolerance"] == 0.1 and cfg["grid"]["repeats"] >= 2
    assert ran == [] and not (tmp_path / "fidelity.md").exists()
    # warn: the suite runs and its table says what the profile was worth on this machine
    md = fidelity.write(tmp_path, p, check="warn")
    assert ran == ["a"] and "GLM: 2.50x (±2%)" in md and "does NOT describe this machine" in md
    assert md.index("Profile check") < md.index("| case |") and "--profile-check warn" in md
    assert (tmp_path / "fidelity.profile_check.json").exists()


def test_a_profile_that_matches_heads_the_table_and_off_skips_the_check(tmp_path: Path, monkeypatch):
    p, ran, checked = _suite_with_fake_engines(tmp_path, monkeypatch, ratio=1.04)
    md = fidelity.write(tmp_path, p)
    assert "describes this machine within ±10%" in md and "| a | expert | 4 |" in md
    checked.clear()
    md = fidelity.write(tmp_path, p, check="off")
    assert checked == [] and "Profile check" not in md
    with pytest.raises(ConfigError, match="check='maybe': expected stop, warn, off or each"):
        fidelity.write(tmp_path, p, check="maybe")


@pytest.mark.slow   # a second and a half or more
def test_each_checks_the_host_before_every_case_and_shows_each_sessions_worker_beside_its_error(
        tmp_path: Path, monkeypatch):
    """A worker whose core ran slow for the case (its check 1.10x) and whose session the simulator
    puts 1/1.1 short: the table holds the two side by side, per session."""
    p, ran, checked = _suite_with_fake_engines(tmp_path, monkeypatch, ratio=1.0)
    p.write_text(p.read_text() + "  b: {sessions: [{worker: 1, model: GLM, requests: 2, prompt: [5, 9], "
                 "output: [3, 4]}]}\n")
    from mosaic.fidelity import profile_check

    check = profile_check.check_profile

    def per_worker(cfg):
        out = check(cfg)
        for m in out["models"].values():
            m["workers"] = {"0": 1.0, "1": 1.1}
        return out

    def slow_worker_1(name, run, jobs, repeats, log=print):
        rows = []
        for job, t in jobs:
            sim = fidelity.stage_metrics(t)
            real = dict(sim, sessions=[dict(x, run_s=[x["run_s"][0], x["run_s"][0] + (x["run_s"][1] - x["run_s"][0])
                                                       * (1.1 if x["worker"] == 1 else 1.0)]) for x in sim["sessions"]])
            rows.append({"case": name, "stage": job.stage, **fidelity.compare(sim, [real])})
        return rows

    monkeypatch.setattr(profile_check, "check_profile", per_worker)
    monkeypatch.setattr(fidelity, "run_case", slow_worker_1)
    md = fidelity.write(tmp_path, p, check="each")
    # one check per case, for the models its plan runs, none before them all
    assert [c["model"] for c in checked] == ["GLM,Qwen", "GLM"]
    assert "--profile-check each" in md
    rows = [line for line in md.splitlines() if line.startswith("| a | expert | ") or line.startswith("| b | expert | ")]
    per_session = [line for line in rows if line.count("|") == 7]
    assert len(per_session) == 3
    qwen = next(line for line in per_session if "| Qwen |" in line)
    glm_a = next(line for line in per_session if line.startswith("| a |") and "| GLM |" in line)
    assert "| 0 | Qwen |" in qwen and "(+0.0%) | 1.00x |" in qwen
    assert "| 1 | GLM |" in glm_a and "(-9.1%) | 1.10x |" in glm_a
    import json
    stored = json.loads((tmp_path / "fidelity.json").read_text())
    assert [len(r["host_check"]) for r in stored] == [1, 1]
    assert len(json.loads((tmp_path / "fidelity.profile_check.json").read_text())) == 2
    # without a check per case the column says none ran
    md = fidelity.write(tmp_path, p, check="off")
    assert all(line.endswith("| - |") for line in md.splitlines() if line.startswith("| a | expert | 0 |"))


def test_each_gives_the_error_left_once_the_hosts_speed_that_hour_is_simulated(tmp_path: Path, monkeypatch):
    """Real runs 10% slower than the profile throughout, and a check before the case that measured
    1.10x: the raw error is about -9%; simulated on the profile calibrated by that check, it is gone."""
    p, ran, checked = _suite_with_fake_engines(tmp_path, monkeypatch, ratio=1.1)

    def slow_host(name, run, jobs, repeats, log=print):
        rows = []
        for job, t in jobs:
            sim = fidelity.stage_metrics(t)
            real = {k: v * 1.1 if k.startswith(("serving", "e2e", "ttft")) else v for k, v in sim.items()}
            rows.append({"case": name, "stage": job.stage, **fidelity.compare(sim, [real])})
        return rows

    monkeypatch.setattr(fidelity, "run_case", slow_host)
    md = fidelity.write(tmp_path, p, check="each")
    import json
    (row,) = json.loads((tmp_path / "fidelity.json").read_text())
    assert row["error"]["serving_s"] == pytest.approx(1 / 1.1 - 1)
    assert abs(row["corrected"]["error"]["serving_s"]) < 0.02
    # these requests of 3-4 tokens are mostly one-off set-up, which the fake real side scales as well
    assert abs(row["corrected"]["error"]["e2e_p50_s"]) < abs(row["error"]["e2e_p50_s"]) / 2
    line = next(x for x in md.splitlines() if x.startswith("| a | expert | -9.1% -> "))
    assert line.endswith("| yes yes yes |")
    assert "Drift-corrected" in md
    # the stored real runs and checks give the same correction again, with no engine (--resimulate)
    resim = fidelity.resimulate(tmp_path / "fidelity.json", tmp_path / "re", p)
    (again,) = json.loads((tmp_path / "re" / "fidelity.resim.json").read_text())
    assert again["corrected"]["error"] == pytest.approx(row["corrected"]["error"])
    assert "| a | expert | -9.1% -> " in resim
    # without a check per case there is nothing to correct by
    assert "Drift-corrected" not in fidelity.write(tmp_path, p, check="warn")


GRAPH_CASE = ("  g: {graph: true, overrides: [topology=dense, 'topology.layers=[3,2]', 'topology.agents=[Qwen]', "
              "topology.aggregator=Exaone, workload.n_queries=4]}\n")


def test_a_graph_case_runs_the_whole_graph_on_both_backends_and_compares_query_latency(tmp_path: Path):
    import json

    p = tmp_path / "suite.yaml"
    # no backend=vllm in the base: the "real" side is the simulator again, so every error is 0
    p.write_text("base: [workload=smoke, models=tiny, cluster=cpu2]\nrepeats: 2\ncases:\n" + GRAPH_CASE)
    md = fidelity.write(tmp_path, p, check="off")
    (row,) = json.loads((tmp_path / "fidelity.json").read_text())
    assert row["stage"] == "graph (dense, concurrency 1)" and row["sim"]["requests"] == 4 * 6
    assert all(e == 0 for e in row["error"].values()) and len(row["real"]) == 2
    sim = row["sim"]
    assert 0 < sim["serving_s"] < sim["makespan_s"] and 0 < sim["ttft_p50_s"] <= sim["e2e_p50_s"]
    assert "| g | graph (dense, concurrency 1) | 24 |" in md and "yes yes yes" in md and "n/a / n/a" in md


def test_the_profile_check_reads_the_profile_each_case_is_costed_from(tmp_path: Path, monkeypatch):
    """A graph whose agents have their own profile set (topology.profiles) is checked against that
    set, not the workload's, which only gives it questions."""
    import shutil

    from mosaic.fidelity import profile_check
    from mosaic.profiles.loader import profile_path

    own = tmp_path / "agents.yaml"
    shutil.copy(profile_path("tiny_cpu"), own)
    p = tmp_path / "suite.yaml"
    p.write_text("base: [workload=smoke, models=tiny, cluster=cpu2]\ncases:\n"
                 "  a: {sessions: [{worker: 0, model: Gemma, requests: 2, prompt: [5, 9], output: [3, 4]}]}\n"
                 + GRAPH_CASE.replace("workload.n_queries=4]", f"workload.n_queries=4, topology.profiles={own}]"))
    suite = fidelity.load_suite(p)
    prepared = {n: fidelity.prepare_case(n, c, suite.base) for n, c in suite.cases.items()}
    seen = []
    monkeypatch.setattr(profile_check, "check_profile", lambda cfg: seen.append((cfg["profile"], cfg["model"])))
    fidelity.profile_checks(prepared)
    assert sorted(seen) == sorted([("tiny_cpu", "Gemma"), (str(own), "Exaone,Qwen")])


def test_a_graph_cases_simulated_side_drops_the_real_backends_options():
    """A suite whose base sets a vLLM option (backend.options.cpu_confine=always) composes its graph
    cases' simulated side too: Hydra refuses that key once backend=sim replaces the group."""
    from mosaic.run.builder import compose

    real = ["workload=smoke", "models=tiny", "backend=vllm", "cluster=cpu2", "backend.options.cpu_confine=always",
            "+backend.options.extra=1", "topology=dense", "seed=5"]
    assert fidelity.sim_overrides(real) == ["workload=smoke", "models=tiny", "backend=vllm", "cluster=cpu2",
                                            "topology=dense", "seed=5", "backend=sim"]
    cfg = compose(fidelity.sim_overrides(real))
    assert cfg.backend.name == "sim" and "cpu_confine" not in cfg.backend.options
    assert cfg.topology.kind == "dense" and cfg.seed == 5


def test_a_graph_case_needs_a_graph_topology_and_nothing_else(tmp_path: Path):
    p = tmp_path / "suite.yaml"
    p.write_text("cases: {a: {graph: true, stages: [expert]}}")
    with pytest.raises(ConfigError, match="exactly one of"):
        fidelity.load_suite(p)
    p.write_text("base: [workload=smoke, models=tiny, cluster=cpu2]\ncases: {a: {graph: true}}")
    with pytest.raises(ConfigError, match="fidelity case a: graph: true needs an agent-graph topology"):
        fidelity.write(tmp_path, p, check="off")


@pytest.mark.slow
def test_resimulate_compares_the_simulator_of_now_with_stored_real_runs(tmp_path: Path, monkeypatch):
    import json

    p = _one_case_suite(tmp_path, monkeypatch)
    fidelity.write(tmp_path, p, check="off")
    stored = tmp_path / "fidelity.json"
    rows = json.loads(stored.read_text())
    # the stored real run served 25% longer than the simulator: a re-simulation reports -20%
    rows[0]["real"][0]["serving_s"] *= 1.25
    stored.write_text(json.dumps(rows))
    out = tmp_path / "re"
    md = fidelity.resimulate(stored, out, p)
    (row,) = json.loads((out / "fidelity.resim.json").read_text())
    assert row["error"]["serving_s"] == pytest.approx(-0.2) and row["error"]["makespan_s"] == 0
    assert row["sim_then"]["serving_s"] == row["sim"]["serving_s"]
    assert "re-simulated" in md and "| a | expert | 2 |" in md
    assert f"`python experiments/fidelity.py --resimulate {stored} --suite {p} --out {out}`" in md
    assert not (out / "fidelity.md").exists()
    # a stored run of another plan is refused, not compared
    rows[0]["sim"]["sessions"][0]["model"] = "GLM"
    stored.write_text(json.dumps(rows))
    with pytest.raises(ConfigError, match=r"case a / expert plans other sessions now.*\(0, 'Qwen'\).*\(0, 'GLM'\)"):
        fidelity.resimulate(stored, out, p)
    with pytest.raises(ConfigError, match="holds no case named b; it holds a"):
        fidelity.resimulate(stored, out, p, only=["b"])
    good = json.loads(json.dumps(rows))
    good[0]["sim"]["sessions"][0]["model"] = "Qwen"
    for damage, said in ((lambda r: r[0]["real"][0].update(makespan_s=float("nan")), "row 0 is not a fidelity row"),
                         (lambda r: r[0]["real"][0].update(serving_s=1e308), "row 0 is not a fidelity row"),
                         (lambda r: r[0]["sim"].pop("sessions"), "row 0 is not a fidelity row"),
                         (lambda r: r.append(json.loads(json.dumps(r[0]))), "row 1 repeats case a / expert"),
                         (lambda r: r.append({**json.loads(json.dumps(r[0])), "stage": "bogus"}),
                          "case a no longer plans stage bogus")):
        bad = json.loads(json.dumps(good))
        damage(bad)
        stored.write_text(json.dumps(bad))
        with pytest.raises(ConfigError, match=said):
            fidelity.resimulate(stored, out, p)
    stored.write_text(json.dumps(good))
    fidelity.resimulate(stored, out, p, only=["a", "a"])
    assert (out / "fidelity-a.resim.md").exists()
    # a subset's stored runs, re-simulated whole, get files named for them, not the suite's
    subset = tmp_path / "fidelity-x.json"
    subset.write_text(json.dumps(good))
    (out / "fidelity.resim.md").write_text("the whole suite\n")
    fidelity.resimulate(subset, out, p)
    assert (out / "fidelity-x.resim.md").exists() and (out / "fidelity.resim.md").read_text() == "the whole suite\n"
    rows[0]["case"] = "gone"
    stored.write_text(json.dumps(rows))
    with pytest.raises(ConfigError, match="case gone is not in the suite"):
        fidelity.resimulate(stored, out, p)


@pytest.mark.parametrize("text, match", [
    ("{", "not JSON"), ("[]", "expected the list of rows"), ('[{"case": "a"}]', "row 0 is not a fidelity row"),
])
def test_resimulate_refuses_a_file_that_is_not_a_fidelity_run(tmp_path: Path, text, match):
    f = tmp_path / "f.json"
    f.write_text(text)
    with pytest.raises(ConfigError, match=match):
        fidelity.resimulate(f, tmp_path)
    with pytest.raises(ConfigError, match="cannot read it"):
        fidelity.resimulate(tmp_path / "none.json", tmp_path)
