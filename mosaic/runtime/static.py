"""static: the plan's assignment, bit for bit (each session runs its planned requests, all
submitted at its start)."""
from mosaic.runtime import RUNTIMES
from mosaic.runtime.base import Runtime

RUNTIMES.register("static")(Runtime)
