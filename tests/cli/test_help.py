"""`mosaic run --help` rendered by mosaic/cli/help.py is Hydra's own help text, without Hydra's cost."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mosaic.cli.help import config_groups, render
from mosaic.config.descriptions import field_descriptions
from mosaic.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


def without_descriptions(text: str) -> str:
    """The help text as Hydra writes it: the schema's descriptions (YAML comments) taken out."""
    lines = [re.sub(r"  # .*$", "", line) for line in text.split("\n") if not re.match(r"^\s*# ", line)]
    return "\n".join(lines)


def help_text(capsys, monkeypatch, args, hydra: bool) -> str:
    if hydra:   # Hydra answers (its app_help), as before mosaic/cli/help.py; in a process of its own,
        # since Hydra's help configures logging onto the stdout pytest captures
        code = ("import sys\nfrom mosaic.cli import precheck\nfrom mosaic.cli.main import main\n"
                f"precheck._app_help = lambda *a: None\nsys.argv = ['run']\nmain({args!r})")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 0, r.stderr[-2000:]
        return r.stdout
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    def slow(*a, **k):   # what made Hydra's help take seconds: a copy of the config repository per call
        raise AssertionError("the help listed options through Hydra's config loader")

    monkeypatch.setattr(ConfigLoaderImpl, "get_group_options", slow)
    monkeypatch.setattr(sys, "argv", ["run"])
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 0
    return capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("args", [["--help"], ["scheduler=ilp", "cluster.n_workers=8", "--help"],
                                  ["--help", "--resolve", "workload=smoke"]])
def test_same_text_as_hydras_help(capsys, monkeypatch, args):
    ours = help_text(capsys, monkeypatch, args, hydra=False)
    assert "== Configuration groups ==" in ours and "scheduler: data_parallel, engine_aware, fifo, ilp" in ours
    assert "  max_models_per_worker: null  # K, the most models one worker loads" in ours
    assert without_descriptions(ours) == help_text(capsys, monkeypatch, args, hydra=True)


@pytest.mark.slow   # a second and a half or more
def test_a_config_dirs_options_are_listed_as_hydra_lists_them(tmp_path, capsys, monkeypatch):
    (tmp_path / "scheduler").mkdir()
    (tmp_path / "scheduler" / "mine.yaml").write_text("name: fifo\n")
    (tmp_path / "extra" / "deep").mkdir(parents=True)
    (tmp_path / "extra" / "deep" / "opt.yaml").write_text("a: 1\n")
    args = ["--config-dir", str(tmp_path), "--help"]
    ours = help_text(capsys, monkeypatch, args, hydra=False)
    assert "scheduler: data_parallel, engine_aware, fifo, ilp, least_loaded, mine, round_robin\n" in ours
    assert "extra/deep: opt\n" in ours
    assert without_descriptions(ours) == help_text(capsys, monkeypatch, args, hydra=True)


def test_groups_leave_out_hydras_own_and_top_level_files(tmp_path):
    for f in ("config.yaml", "hydra/help/x.yaml", "b/two.yml", "b/one.yaml", "b/notes.txt", "a/c/d.yaml"):
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("{}\n")
    assert config_groups([tmp_path]) == {"a/c": ["d"], "b": ["one", "two"]}


def test_a_template_with_hydras_other_variables_is_left_to_hydra(tmp_path):
    cfg = OmegaConf.create({"hydra": {"help": {"template": "$FLAGS_HELP\n$CONFIG"}}, "seed": 1})
    assert render(cfg, [tmp_path]) is None
    cfg.hydra.help.template = "groups:\n$APP_CONFIG_GROUPS== $CONFIG"
    assert render(cfg, [tmp_path]) == f"groups:\n== seed: 1  # {field_descriptions()['seed']}\n"
