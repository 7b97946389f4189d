"""Hydra's command line, read with Hydra's public API only: its flags (as `hydra.main` parses
them) and a basic sweep's expansion into jobs (as the basic sweeper does). Checked against Hydra's
own implementation in tests/run/test_hydra_args.py, so a Hydra release that changes either shows."""
from __future__ import annotations

import argparse
import itertools
from typing import Sequence

from hydra.core.override_parser.types import Override
from hydra.errors import HydraException


def args_parser() -> argparse.ArgumentParser:
    """Hydra's flags (hydra 1.3's `hydra.main`); whatever is not a flag is an override."""
    p = argparse.ArgumentParser(add_help=False, description="Hydra")
    p.add_argument("--help", "-h", action="store_true")
    p.add_argument("--hydra-help", action="store_true")
    p.add_argument("--version", action="store_true")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--cfg", "-c", choices=["job", "hydra", "all"])
    p.add_argument("--resolve", action="store_true")
    p.add_argument("--package", "-p")
    p.add_argument("--run", "-r", action="store_true")
    p.add_argument("--multirun", "-m", action="store_true")
    p.add_argument("--shell-completion", "-sc", action="store_true")
    p.add_argument("--config-path", "-cp")
    p.add_argument("--config-name", "-cn")
    p.add_argument("--config-dir", "-cd")
    p.add_argument("--experimental-rerun")
    p.add_argument("--info", "-i", const="all", nargs="?",
                   choices=["all", "config", "defaults", "defaults-tree", "plugins", "searchpath"])
    return p


def expand_sweep(overrides: Sequence[Override]) -> list[list[str]]:
    """Every job of a basic sweep, in the order Hydra launches them: one list of `key=value`
    overrides per combination; a later override of a key replaces an earlier one (sweeper.params
    first, then the command line)."""
    final: dict[str, list[str]] = {}
    for o in overrides:
        key = o.get_key_element()
        if o.is_sweep_override():
            if not o.is_discrete_sweep():
                raise HydraException(f"the basic sweeper does not support sweep type : {o.value_type.name}")
            try:
                values = list(o.sweep_string_iterator())
            except ValueError as e:   # range(0,2,0): Python's range refuses a step of 0
                raise HydraException(f"{o.input_line}: {e}; give range(start,stop,step) a step other than 0") from None
            final[key] = [f"{key}={v}" for v in values]
        else:
            final[key] = [f"{key}={o.get_value_element_as_str()}"]
    return [list(job) for job in itertools.product(*final.values())]
