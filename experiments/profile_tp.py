"""Measure an engine's tensor-parallel scaling: the same requests on one model at TP=1 and TP=N.

Prints the `engine.tensor_parallel` block for a profile file. Method (three batches per engine, the
first one's warm-up kept out of the step time): mosaic/fitting/real_engine.py, measure_tp.

    python experiments/profile_tp.py                 # CPU: tiny Qwen, TP=2, 3 repeats
    python experiments/profile_tp.py model=Exaone tp=4 device=cuda models=paper repeats=2
    python experiments/profile_tp.py model=LlamaR1 cpu_confine=always   # for a profile measured confined
"""
import json
import sys

from mosaic.core.errors import ConfigError
from mosaic.fitting.options import parse_options
from mosaic.fitting.real_engine import TP_DEFAULTS, measure_tp


def main(argv: list[str]) -> None:
    try:
        cfg = parse_options(argv, TP_DEFAULTS, __doc__)
        block = measure_tp(cfg)
    except ConfigError as e:   # a bad option: one line, before any engine starts
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except RuntimeError as e:   # an engine that did not start or finish: its log is above
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps({"tensor_parallel": block}, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
