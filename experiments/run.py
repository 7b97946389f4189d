"""Run one MoA workload end to end: `python experiments/run.py scheduler=ilp backend=sim`
(the same as `mosaic run ...`). The app: mosaic/run/main.py."""
from mosaic.run.main import main

if __name__ == "__main__":
    main()
