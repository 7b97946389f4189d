"""What per-question length signals recover of the clairvoyant gain in engine_aware's assignment.

    python experiments/length_signals.py [--out results]

Writes <out>/length_signals.md (needs ../shared/data). Logic: mosaic/analysis/length_signals.py.
"""
from pathlib import Path

from mosaic.analysis.length_signals import write
from mosaic.core.arguments import ArgumentParser
from mosaic.run.jobs import out_arg

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    ap = ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    args = ap.parse_args()
    out_arg(ap, args.out)   # before the work, not after it
    print(f"wrote {write(args.out)}")
