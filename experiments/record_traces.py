"""Record real traces (the same as `mosaic record ...`): chosen experts answer a question set on real
engines; one trace file per expert that a `trace` workload reads. Logic: mosaic/run/record.py."""
import sys

from mosaic.run.record import main

if __name__ == "__main__":
    sys.exit(main(prog=None))
