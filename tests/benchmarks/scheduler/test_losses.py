"""python -m benchmarks.scheduler.losses: where engine_aware loses in the benchmark, priced by its
own cost model."""
import math
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.scheduler import bench as sb
from benchmarks.scheduler import losses as sl
from mosaic.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def table():
    insts = sb.instances(("generated",), 0, quick=True)[:2]
    return sb.to_csv_frame(sb.bench(insts, ["engine_aware", "round_robin", "data_parallel"]))


def one_loss(table):
    """The table with round robin made the faster plan in simulation on the first instance only;
    that instance's name and the mask of its engine_aware row."""
    t = table.copy()
    name = t.instance.iloc[0]
    own = (t.instance == name) & (t.policy == "engine_aware")
    rr = t[(t.instance == name) & (t.policy == "round_robin")].iloc[0]
    t.loc[own, "sim_s"] = rr.sim_s * 1.5
    t.loc[(t.instance != name) & (t.policy == "engine_aware"), "sim_s"] = 0.0
    return t, name, own


def test_a_loss_is_priced_by_engine_awares_own_cost_model(table):
    t, name, own = one_loss(table)
    lost = sl.losses(t)
    assert len(lost) == 1 and lost[0][0] == name and lost[0][3] < lost[0][2]   # the fastest K-respecting other
    df = sl.explain(t, 0, quick=True)
    assert list(df.instance) == [name]
    r = df.iloc[0]
    assert r.own_predicted_s == pytest.approx(t[own].predicted_s.iloc[0], rel=1e-6)
    assert r.faster_predicted_s > 0 and r.sim_gap == pytest.approx(r.own_sim_s / r.faster_sim_s - 1)
    assert r.calibration_model and abs(r.calibration_gap) < 10
    assert r.redraws == sl.REDRAWS and 0 <= r.redraw_wins <= r.redraws and abs(r.redraw_gap) < 5
    assert 0 <= r.fresh_wins <= r.redraws and abs(r.fresh_gap) < 5 and abs(r.draw_gap) < 10
    md = sl.render(df, "cmd")
    assert f"| {name} | {r.faster} |" in md and "Losses: 1;" in md
    assert r.redraw_se >= 0 and r.fresh_se >= 0
    assert f"| {r.draw_gap:+.0%} | {r.redraw_wins} of {r.redraws} ({r.redraw_gap:+.1%} +- {r.redraw_se:.1%}) | " \
           f"{r.fresh_wins} of {r.redraws} ({r.fresh_gap:+.1%} +- {r.fresh_se:.1%}) |" in md
    assert sl.render(sl.explain(t, 0, quick=True, redraws=0), "cmd").splitlines()[-1].endswith("| - | - |")


def test_a_redraw_keeps_each_models_demand_and_only_moves_it_between_its_requests():
    import numpy as np

    outcomes = {"a1": 1, "a2": 2, "a3": 3, "b1": 10, "b2": 20}
    by_model = {"A": ["a1", "a2", "a3"], "B": ["b1", "b2"]}
    seen = set()
    for d in range(8):
        out = sl.shuffled_outcomes(outcomes, by_model, np.random.default_rng([0, d]))
        assert sorted(out[i] for i in by_model["A"]) == [1, 2, 3] and sorted(out[i] for i in by_model["B"]) == [10, 20]
        seen.add(tuple(out.values()))
    assert len(seen) > 1 and outcomes == {"a1": 1, "a2": 2, "a3": 3, "b1": 10, "b2": 20}


@pytest.mark.slow
def test_a_fresh_draw_redraws_every_output_from_its_models_distribution_within_the_context():
    import numpy as np

    inst = sb.instances(("generated",), 0, quick=True)[0]
    outs = [sl.fresh_outcomes(inst, np.random.default_rng([0, d, 1])) for d in range(2)]
    assert outs[0] == sl.fresh_outcomes(inst, np.random.default_rng([0, 0, 1]))   # seeded
    room = inst.profiles.engine.output_room
    for r in inst.requests:
        assert 1 <= outs[0][r.id].output_tokens <= room(r.prompt_tokens)
        assert outs[0][r.id].answer == inst.workload.outcomes[r.id].answer
    assert any(outs[0][r.id] != outs[1][r.id] for r in inst.requests)
    # Each model's demand is drawn again (a shuffle would keep it), around its distribution's mean.
    model = max({r.model for r in inst.requests}, key=lambda m: sum(r.model == m for r in inst.requests))
    ids = [r.id for r in inst.requests if r.model == model]
    sums = {sum(o[i].output_tokens for i in ids) for o in outs}
    assert len(sums) == 2
    draws = [np.mean([sl.fresh_outcomes(inst, np.random.default_rng([9, d, 1]))[i].output_tokens for i in ids])
             for d in range(40)]
    assert np.mean(draws) == pytest.approx(sl._capped_mean(inst, model), rel=0.1)
    # The generated family draws from each model's default distribution; a preset from its dataset's.
    assert inst.dataset is None and sb.preset_instances(0, quick=True)[0].dataset == "mmlu_pro"


def test_a_plan_redrawn_against_itself_never_wins_and_redraws_repeat():
    inst = sb.instances(("generated",), 0, quick=True)[0]
    from mosaic.run.pipeline import plan_stage

    reqs = list(inst.requests)
    plans = [plan_stage("expert", reqs, inst.workload.expert_models, sb.scheduler_config(p, inst.k), "scheduled",
                        inst.cluster, inst.profiles, inst.workload)[1] for p in ("engine_aware", "round_robin")]
    for fresh in (False, True):
        assert sl.redraw(inst, plans[0], plans[0], 3, 0, fresh) == (0, 0.0, 0.0)
        once = sl.redraw(inst, plans[0], plans[1], 3, 0, fresh)
        assert once == sl.redraw(inst, plans[0], plans[1], 3, 0, fresh)   # seeded: the same redraws
        one = sl.redraw(inst, plans[0], plans[1], 1, 0, fresh)
        assert math.isnan(one[2]) and once[2] >= 0   # no standard error from one draw


def test_instances_picks_among_the_losses_and_names_the_ones_it_has(table, tmp_path):
    t, name, _ = one_loss(table)
    df = sl.explain(t, 0, quick=True, redraws=2, only=[name])
    assert list(df.instance) == [name] and df.redraws.iloc[0] == 2
    assert "Losses (those --instances names): 1;" in sl.render(df, "cmd", selected=True)
    other = t.instance[t.instance != name].iloc[0]
    with pytest.raises(ConfigError, match=rf"--instances: {other} is not among the table's 1 losses of engine_aware \({name}\)"):
        sl.explain(t, 0, quick=True, redraws=0, only=[other])


@pytest.mark.slow
def test_no_loss_no_row_and_bad_tables_are_one_line(table, tmp_path):
    t = table.copy()
    t.loc[t.policy == "engine_aware", "sim_s"] = 0.0
    assert sl.losses(t) == [] and sl.explain(t, 0, quick=True).empty
    with pytest.raises(ConfigError, match="no column respects_k"):
        sl.losses(t.drop(columns=["respects_k"]))
    t.loc[t.policy == "engine_aware", "sim_s"] = 1e9
    with pytest.raises(ConfigError, match=r"is not among those seed 0 makes"):
        sl.explain(t, 0, quick=False)   # a --quick table read as a full one
    r = subprocess.run([sys.executable, "-m", "benchmarks.scheduler.losses", "--table",
                        str(tmp_path / "none.csv"), "--out", str(tmp_path / "new" / "l.md")], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "none.csv: no such file" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "new").exists()   # refused before --out's folder is made
    r = subprocess.run([sys.executable, "-m", "benchmarks.scheduler.losses", "--redraws", "-1"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--redraws must be >= 0 (got -1)" in r.stderr


def test_a_damaged_table_is_one_line_naming_the_row(table):
    t = table
    for edit, said in [(lambda x: x.drop(columns=["family"]), "no column family"),
                       (lambda x: x.assign(sim_s=x.sim_s.astype(str) + "s"), "not a number of seconds"),
                       (lambda x: x.assign(respects_k="yes"), "respects_k of .* is 'yes', not True or False"),
                       (lambda x: x.iloc[[0, 0, 1]], "has 2 rows, not one")]:
        with pytest.raises(ConfigError, match=said):
            sl.losses(edit(t.copy()))


def test_a_table_of_other_plans_is_refused(table):
    # A table from another --seed (or version, or machine) names the same instances with other plans:
    # pricing today's plans against its simulated times would be silently wrong.
    t, name, own = one_loss(table)
    t.loc[own, "plan_hash"] = "0123456789abcdef"
    with pytest.raises(ConfigError, match=f"the table's engine_aware plan of {name} is not the one seed 0 --quick"):
        sl.explain(t, 0, quick=True)
