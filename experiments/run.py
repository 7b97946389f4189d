"""Run one MoA workload end to end: `python experiments/run.py scheduler=ilp backend=sim`
(the same as `mosaic run ...`). The app: mosaic/cli/main.py."""
from mosaic.core.interrupts import install_early

install_early()   # first: a Ctrl-C during the imports below is one line, not a traceback

from mosaic.cli.signals import quiet_interrupt, sigterm_as_exit  # noqa: E402

if __name__ == "__main__":
    # Entered before the app's imports (Hydra, ~0.2 s): a Ctrl-C or SIGTERM during them is one
    # line too, not a traceback.
    with quiet_interrupt(), sigterm_as_exit():
        from mosaic.cli.main import main

        main()
