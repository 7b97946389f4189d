"""Measure how engine steps slow down when other workers of the host are busy.

Prints the `engine.host_contention` block for a profile file (and writes it there with
profile=PATH). Method: mosaic/fitting/host_contention.py.

    python experiments/profile_contention.py                  # CPU: the six tiny experts, 1 vs 2 busy vs a spinning neighbour
    python experiments/profile_contention.py profile=mosaic/profiles/data/tiny_cpu.yaml
    python experiments/profile_contention.py model=Qwen repeats=1 requests=1,4 spin=false   # a quick look
    python experiments/profile_contention.py method=lockstep   # the first method (engines in lockstep), to compare

Options (key=value): models (registry), model (comma-separated, or all), n_workers, device, repeats,
requests (the batch sizes, comma-separated), prompt, out, long_out, spin (also measure a spinning
neighbour's share: true|false), profile (the file to write the block into), method (grid: the
profiler's own batches with the other workers idle or busy; lockstep: engines serving in lockstep),
cpu_confine (start|always, as backend.options.cpu_confine: measure as the runs will be confined).
"""
import json
import sys

from mosaic.core.errors import ConfigError
from mosaic.fitting.options import parse_options
from mosaic.fitting.host_contention import DEFAULTS, measure_contention, write_into


def main(argv: list[str]) -> None:
    try:
        cfg = parse_options(argv, DEFAULTS, __doc__)
        block = measure_contention(cfg)
        print(json.dumps({"host_contention": block}, indent=2))
        if cfg["profile"]:
            print(f"wrote {write_into(cfg['profile'], block)}")
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except RuntimeError as e:   # an engine that did not start or finish: its log is above
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
