"""Progress bars (tqdm) for work longer than a few seconds: a run's stages, real-engine workers,
profiling and fitting. On stderr, shown when stderr is a terminal; MOSAIC_PROGRESS=1 forces them
on (e.g. in a CI log), MOSAIC_PROGRESS=0 off."""
from __future__ import annotations

import os
import sys
from typing import Any

from tqdm import tqdm


def enabled() -> bool:
    flag = os.environ.get("MOSAIC_PROGRESS", "").strip().lower()
    if flag in ("0", "false", "no", "off"):
        return False
    if flag in ("1", "true", "yes", "on"):
        return True
    if flag and flag not in _warned:   # a typo: said once, then as if unset
        _warned.add(flag)
        print(f"warning: MOSAIC_PROGRESS={flag!r} is not one of 1/0 (true/false, yes/no, on/off): progress bars "
              "shown only on a terminal", file=sys.stderr, flush=True)
    return sys.stderr.isatty()


_warned: set[str] = set()


def bar(total: int | None, desc: str, unit: str = "req", **kwargs: Any) -> tqdm:
    """A bar over `total` items; a no-op object with the same methods when progress is off."""
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled(), leave=False, dynamic_ncols=True,
                mininterval=0.5, file=sys.stderr, **kwargs)
