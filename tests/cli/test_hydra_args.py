"""mosaic/cli/hydra_args.py reads Hydra's command line with its public API: it must agree with
Hydra's own (private) parser and basic sweeper, which this test alone imports to compare."""
import pytest
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra._internal.utils import get_args_parser
from hydra.core.override_parser.overrides_parser import OverridesParser

from mosaic.cli.hydra_args import args_parser, expand_sweep


@pytest.mark.parametrize("line", [
    [], ["a=1", "b=2"], ["-m", "seed=0,1"], ["--cfg", "job", "--resolve"], ["-cn", "paper_sweep", "-m", "x=1"],
    ["--config-dir", "/tmp", "--info"], ["--info", "plugins"], ["--hydra-help"], ["-h"], ["-sc"],
    ["-p", "scheduler", "--cfg", "all"], ["--experimental-rerun", "f.pickle"],
])
def test_flags_parse_as_hydra_parses_them(line):
    ours, hydras = vars(args_parser().parse_args(line)), vars(get_args_parser().parse_args(line))
    ours.pop("version")
    assert ours == hydras


@pytest.mark.parametrize("overrides", [
    ["seed=0,1,2", "scheduler=ilp,round_robin"],
    ["workload=a,b", "seed=1", "workload=c,d"],          # a later value replaces the earlier
    ["+x=1", "~y", "cluster.n_workers=2,4,8", "aggregation=tau1"],
    ["seed=range(0,3)", "k=choice(1,2)"],
    [],
])
def test_sweep_expands_as_the_basic_sweeper_does(overrides):
    parsed = OverridesParser.create().parse_overrides(overrides)
    assert expand_sweep(parsed) == BasicSweeper.split_arguments(parsed, None)[0]
