"""mosaic/run/app.py: the console summary a run prints, in plain words."""
import logging

from mosaic.run.app import format_table, run
from mosaic.run.builder import compose


def test_the_summary_says_each_number_in_words_and_the_cut_prompts_once(caplog):
    with caplog.at_level(logging.WARNING):
        out = run(compose(["workload=synth_small"]))
    s = out.summary
    cut = s["admission"]["aggregator_prompts_cut"]
    assert cut > 0
    # Said once, as a count in the table, not as a warning before it (it was printed on every default run).
    assert not [r for r in caplog.records if "aggregator prompts" in r.getMessage()]
    rows = dict(line.split("  ", 1) for line in format_table(s).splitlines())
    rows = {k.strip(): v.strip() for k, v in rows.items()}
    assert rows["aggregator prompts cut"].startswith(f"{cut} of {s['n_aggregator_requests']} to "
                                                     f"{s['aggregator_prompt_cap']} tokens")
    assert "engine.max_model_len" in rows["aggregator prompts cut"]
    # Which accuracy is which: the gated run's, then had every question been aggregated.
    assert rows["accuracy"] == (f"{100 * s['accuracy']:.2f} % ({100 * s['accuracy_always_aggregate']:.2f} % "
                                "had every question been aggregated)")
    plan = rows["expert plan"]
    assert plan.startswith(f"{s['scheduler']}, ") and "planned in" in plan and "predicted" in plan
    assert "plan from path" not in plan and "gap" not in plan
    # The TP aggregator is one engine over all workers, named as such, after each worker's expert sessions.
    workers = [v for k, v in rows.items() if k.startswith("worker ")]
    assert len(workers) == len(s["workers"]) and all("(one TP-4 engine over all workers)" in w for w in workers)
    for w, row in zip(s["workers"], workers):
        expert = row.split(": ", 1)[1].split("; aggregator")[0]
        assert expert == " > ".join(w["sessions"][:w["expert_sessions"]])


def test_a_scheduled_aggregator_is_listed_as_the_workers_aggregator_sessions():
    s = run(compose(["workload=synth_small", "aggregation.placement=scheduled"])).summary
    text = format_table(s)
    assert "TP-" not in text
    for w in s["workers"]:
        agg = w["sessions"][w["expert_sessions"]:]
        if agg:
            assert f"; aggregator {' > '.join(agg)}" in text
