"""Every setting is described where the schema declares it, and `mosaic run --help` shows it."""
import subprocess
import sys
from pathlib import Path

from mosaic.config.descriptions import all_fields, annotate_yaml, field_descriptions

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_has_a_description():
    described = field_descriptions()
    assert [p for p in all_fields() if p not in described] == []
    assert "scheduler.max_models_per_worker" in all_fields() and "seed" in all_fields()


def test_descriptions_come_from_the_line_the_block_above_or_the_range_check():
    d = field_descriptions()
    assert d["scheduler.time_limit_s"].startswith("wall-clock safety net")          # on its line
    assert d["runtime.add_replicas"].startswith("pull: a worker done with its plan")  # the block above
    assert d["workload.skill_spread"] == "a standard deviation of per-category skill (logit scale)"  # range


def test_annotation_follows_nesting_and_leaves_free_form_entries_alone():
    text = "a:\n  b: 1\n  c:\n    b: 2\n  long: 3\nb: 4\n"
    got = annotate_yaml(text, {"a.b": "first", "b": "top", "a.c": "map", "a.long": "word " * 30}, width=60)
    lines = got.splitlines()
    assert lines[:4] == ["a:", "  b: 1  # first", "  c:  # map", "    b: 2"]   # a.c.b has none
    assert all(line.startswith("  # word") and len(line) <= 60 for line in lines[4:-2])
    assert lines[-2:] == ["  long: 3", "b: 4  # top"]


def test_help_shows_each_settings_description():
    p = subprocess.run([sys.executable, "-m", "mosaic", "run", "--help"], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    assert "  n_workers: 4  # GPU workers (one GPU each)" in p.stdout
    assert "  # pull: a worker done with its plan may load a model" in p.stdout
