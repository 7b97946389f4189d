"""The scripts' shared parser helpers."""
import pytest

from mosaic.core.arguments import ArgumentParser, rerun_command


@pytest.mark.parametrize("argv, want", [
    ([], "python x.py"),
    (["--seeds", "0", "1", "--out", "/tmp/r"], "python x.py --seeds 0 1"),
    (["--out=/tmp/r", "--queries", "16"], "python x.py --queries 16"),
    (["--workload", "a b"], "python x.py --workload 'a b'"),   # quoted as a shell would need it
    (["--outer", "3"], "python x.py --outer 3"),               # another option that starts like --out
])
def test_rerun_command_keeps_the_options_but_the_output_folder(argv, want):
    assert rerun_command("x.py", argv) == want


def test_parser_error_is_one_line(capsys):
    ap = ArgumentParser(prog="t", description="First paragraph\nwrapped.\n\nSecond.")
    assert ap.description == "First paragraph wrapped."
    with pytest.raises(SystemExit) as e:
        ap.error("--x: bad")
    assert e.value.code == 2
    assert capsys.readouterr().err == "t: error: --x: bad (--help lists the options)\n"
