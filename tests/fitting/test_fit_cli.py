"""The fitting and comparison scripts: bad input is one line and exit 2, before any work."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize("script, args, says", [
    # each was a ConfigError / FileNotFoundError / TypeError traceback (exit 1)
    ("fit_session_costs.py", ["--profiles", "NONE"], "profiles: no file"),
    ("fit_session_costs.py", ["--profiles", "tiny_cpu", "--models", "Nope"], "model 'Nope' has no profile"),
    ("fit_profiles.py", ["--data", "NONE", "--out", "OUT/p.yaml"], "--data NONE is not a folder"),
    ("fit_profiles.py", ["--data", "EMPTY", "--out", "OUT/p.yaml"], "has no traces/ folder: point it at ../shared/data"),
    ("fit_difficulty.py", ["--seeds", "0", "--out", "OUT/d.md"], "--seeds must be a number of replicates in [1, 1000]"),
    ("fit_difficulty.py", ["--profiles", "NONE", "--out", "OUT/d.md"], "--profiles NONE: no such file"),
    ("compare_policies.py", ["--seeds", "0", "0", "--out", "OUT"], "--seeds names a seed more than once (0 0)"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, script, args, says):
    none = str(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    args = [none if a == "NONE" else str(tmp_path / "empty") if a == "EMPTY" else a.replace("OUT", str(tmp_path / "out"))
            for a in args]
    r = subprocess.run([sys.executable, str(ROOT / "experiments" / script), *args], capture_output=True, text=True,
                       timeout=120, cwd=ROOT)
    assert r.returncode == 2 and says.replace("NONE", none) in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("text, says", [("a,b\n", "expected a mapping"), ("foo: 1\n", "unknown field(s) ['foo']"),
                                        ("a: [\n", "--profiles: ")])
def test_a_profile_file_that_does_not_load_is_refused_before_the_fit_and_left_as_it_was(tmp_path, text, says):
    """It was a traceback after the minutes of fitting, and a file of unknown fields was rewritten
    (a datasets section added) before it was refused."""
    (tmp_path / "data" / "traces").mkdir(parents=True)
    profile = tmp_path / "p.yaml"
    profile.write_text(text)
    r = subprocess.run([sys.executable, str(ROOT / "experiments" / "fit_difficulty.py"), "--data",
                        str(tmp_path / "data"), "--profiles", str(profile), "--out", str(tmp_path / "d.md")],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and says in r.stderr, r.stderr
    assert profile.read_text() == text and not (tmp_path / "d.md").exists()
