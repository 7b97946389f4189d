"""benchmarks/scheduler/table.py: a benchmark table read back, with errors that name the fix."""
import pytest

from benchmarks.scheduler import table as bench_table
from mosaic.core.errors import ConfigError


def test_read_table_names_the_file_and_the_fix(tmp_path):
    good = tmp_path / "t.csv"
    good.write_text("instance,policy\ng00,engine_aware\n")
    assert list(bench_table.read_table(good).policy) == ["engine_aware"]
    with pytest.raises(ConfigError, match="cannot read it.*python -m benchmarks.scheduler first"):
        bench_table.read_table(tmp_path / "none.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ConfigError, match="empty.csv: not a CSV table"):
        bench_table.read_table(empty)


def test_arguments_default_to_the_results_folder(tmp_path):
    from mosaic.core.arguments import ArgumentParser

    ap = ArgumentParser()
    bench_table.add_arguments(ap, tmp_path, "x.md")
    args = ap.parse_args([])
    assert args.table == tmp_path / "scheduler_bench.csv" and args.out == tmp_path / "x.md"
    assert args.seed == 0 and not args.quick
    with pytest.raises(SystemExit):   # no table there: refused before --out is made
        bench_table.check_arguments(ap, args)
    assert not args.out.exists()
