"""The `mosaic` console command (mosaic/__main__.py): subcommands, quick help, the Hydra help text,
and a wheel that works outside the checkout (slow: builds and installs it)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mosaic.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


def test_help_lists_the_commands_and_an_unknown_one_is_exit_2(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"mosaic {c}" in out for c in ("run", "sweep", "runs", "timeline", "perfetto", "record"))
    assert main(["nope"]) == 2
    assert "unknown command 'nope'" in capsys.readouterr().err


def test_top_level_help_imports_nothing_heavy():
    """`mosaic --help` and `mosaic run --help` must not load the solver, SciPy or the backends."""
    code = ("import sys; from mosaic.__main__ import main; main(['--help']); "
            "heavy = [m for m in ('pyomo', 'scipy', 'simpy', 'mosaic.run.builder') if m in sys.modules]; "
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT).stdout
    assert "HEAVY []" in out
    code = ("import sys\nfrom mosaic.__main__ import main\ntry:\n    main(['run', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('HEAVY', [m for m in ('pyomo', 'scipy', 'simpy', 'mosaic.run.builder') if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert "HEAVY []" in r.stdout, r.stderr[-2000:]
    # The app's own help: what MOSAIC is and what each group sets, not Hydra's stock text.
    assert "powered by Hydra" not in r.stdout
    assert "Mixture-of-Agents" in r.stdout
    for group in ("scheduler", "backend", "workload", "cluster", "aggregation", "models"):
        assert f"\n  {group} " in r.stdout


def code(argv):
    """main's exit status, whether it returns it or (Hydra, on a failure) exits with it."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


@pytest.mark.slow
def test_run_sweep_and_runs_table(tmp_path, capsys):
    assert code(["run", "workload=synth_small", "workload.n_queries=8", f"hydra.run.dir={tmp_path / 'one'}"]) == 0
    assert json.loads((tmp_path / "one" / "summary.json").read_text())["n_queries"] == 8
    assert (tmp_path / "one" / "run.log").exists()    # Hydra's job log keeps the app's name
    assert code(["sweep", "workload=synth_small", "workload.n_queries=8", "cluster.n_workers=2,4",
                 f"hydra.sweep.dir={tmp_path / 'sw'}"]) == 0
    assert code(["run", "scheduler=nope", f"hydra.run.dir={tmp_path / 'bad'}"]) == 2
    capsys.readouterr()
    assert main(["runs", str(tmp_path / "sw")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "cluster.n_workers" in lines[0] and "end_to_end_s" in lines[0]
    assert len(lines) == 3 and {ln.split()[3] for ln in lines[1:]} == {"2", "4"}
    assert main(["runs", str(tmp_path / "sw"), "--columns", "banana"]) == 2
    assert "--columns banana" in capsys.readouterr().err
    if Path("/dev/full").exists():   # a disk that fills while the table is written: one line
        assert main(["runs", str(tmp_path / "sw"), "--csv", "/dev/full"]) == 2
        err = capsys.readouterr().err
        assert "error: --csv cannot write /dev/full: No space left on device; free space there" in err
        assert "Traceback" not in err


@pytest.mark.slow
def test_a_wheel_runs_outside_the_checkout(tmp_path):
    """pip's wheel of the project (not editable), installed into its own folder: `mosaic run` and a
    2-job sweep from a directory outside the checkout, configs and profiles from the wheel."""
    wheels, site, work = tmp_path / "wheels", tmp_path / "site", tmp_path / "work"
    work.mkdir()
    pip = [sys.executable, "-m", "pip", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(ROOT)], check=True,
                   capture_output=True)
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), *map(str, wheels.glob("*.whl"))],
                   check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run([sys.executable, "-c", "import mosaic; print(mosaic.__file__)"], env=env, cwd=work,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(site))
    script = site / "bin" / "mosaic"
    r = subprocess.run([sys.executable, str(script), "run", "workload=smoke", "hydra.run.dir=one"], env=env,
                       cwd=work, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((work / "one" / "summary.json").read_text())["n_queries"] == 48
    r = subprocess.run([sys.executable, str(script), "sweep", "workload=synth_small", "workload.n_queries=8",
                        "seed=0,1", "hydra.sweep.dir=sw"], env=env, cwd=work, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(list((work / "sw").rglob("summary.json"))) == 2


@pytest.mark.parametrize("extra, said", [(["--limit", "0"], "--limit must be >= 1"),
                                         (["--limit", "-3"], "--limit must be >= 1"),
                                         (["--workers", "0"], "--workers must be >= 1")])
def test_record_refuses_bad_counts_before_any_engine(tmp_path, capsys, extra, said):
    from mosaic.__main__ import main

    with pytest.raises(SystemExit) as e:
        main(["record", "--questions", str(tmp_path / "q.json"), "--experts", "Qwen", "--out", str(tmp_path / "o"), *extra])
    assert e.value.code == 2 and said in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["runs"], ["timeline"], ["perfetto"], ["record", "--bogus"]])
def test_a_subcommands_usage_error_is_one_line(argv, capsys):
    from mosaic.__main__ import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "error:" in err and "--help" in err, err


def test_record_names_its_own_device_flag(tmp_path, capsys):
    from mosaic.__main__ import main

    with pytest.raises(SystemExit) as e:
        main(["record", "--questions", str(tmp_path / "q.json"), "--experts", "Qwen", "--out", str(tmp_path / "o"),
              "--device", "tpu"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--device: invalid choice: 'tpu'" in err and "backend.options" not in err


def test_record_refuses_an_out_that_is_a_file(tmp_path, capsys):
    from mosaic.__main__ import main

    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(SystemExit) as e:
        main(["record", "--questions", str(tmp_path / "q.json"), "--experts", "Qwen", "--out", str(f)])
    assert e.value.code == 2 and "is a file" in capsys.readouterr().err


def test_record_says_an_out_it_cannot_make_before_any_engine(tmp_path, capsys, without_vllm):
    """Before the engine's own checks too: without vLLM installed it said that instead."""
    from mosaic.__main__ import main

    q = tmp_path / "q.json"
    q.write_text(json.dumps([{"question": "2+2? (A) 3 (B) 4", "gold_answer": "B"}]))
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "rec"
    assert main(["record", "--questions", str(q), "--experts", "Qwen", "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert f"--out {out} is not a writable directory (a path component is a file)" in err and "Traceback" not in err


def test_runs_shows_the_makespan_of_graph_runs_beside_flat_ones(tmp_path, capsys):
    from mosaic.run.app import run, write_outputs
    from mosaic.run.builder import compose

    write_outputs(run(compose(["workload=synth_small", "workload.n_queries=4"])), tmp_path / "flat")
    write_outputs(run(compose(["topology=tree", "workload=synth_small", "workload.n_queries=2"])), tmp_path / "tree")
    capsys.readouterr()
    assert main(["runs", str(tmp_path)]) == 0
    head, flat, tree = capsys.readouterr().out.splitlines()
    assert head.split()[-1] == "makespan_s" and "end_to_end_s" in head
    makespan = json.loads((tmp_path / "tree" / "summary.json").read_text())["makespan_s"]
    assert float(tree.split()[-1]) == pytest.approx(makespan, rel=1e-6) and flat.split()[-1] == "NaN"
