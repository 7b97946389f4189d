"""The command-line parser every script and subcommand uses: argparse, with its errors on one line."""
from __future__ import annotations

import argparse


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose usage error is one line on stderr (exit 2), naming the option and
    pointing to --help, instead of the usage block followed by the message."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (--help lists the options)\n")
