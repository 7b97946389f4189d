"""The command-line parser every script and subcommand uses: argparse, with its errors on one line."""
from __future__ import annotations

import argparse
from pathlib import Path


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose usage error is one line on stderr (exit 2), naming the option and
    pointing to --help, instead of the usage block followed by the message."""

    def __init__(self, *args, description: str | None = None, **kwargs):
        # A script's docstring: its first paragraph, as one line (its first line alone broke off
        # mid-sentence where the paragraph wraps).
        if description:
            description = " ".join(description.strip().split("\n\n")[0].split())
        super().__init__(*args, description=description, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (--help lists the options)\n")


def repeated(values) -> list:
    """The values given more than once, sorted (an option's list that must not repeat itself)."""
    return sorted({v for v in values if values.count(v) > 1})


def rerun_command(script: str, argv: list[str], drop: str = "--out") -> str:
    """The command that regenerates a report: `script` with the options it was given, less `drop`
    and its value (where the report goes is not part of what it says)."""
    import shlex

    kept, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == drop:
            skip = True
        elif not a.startswith(drop + "="):
            kept.append(shlex.quote(a))
    return " ".join([f"python {script}", *kept])


def out_arg(parser, path: "Path", file: bool = False) -> "Path":
    """A script's --out checked before its work (check_writable_dir, or check_writable_file with
    file=True); an unusable one ends the script through parser.error: one line, exit 2."""
    from mosaic.core.rundir import RunDirError, check_writable_dir, check_writable_file

    try:
        return (check_writable_file if file else check_writable_dir)(path, "--out")
    except RunDirError as e:
        parser.error(str(e))
