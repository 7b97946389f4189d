"""Scheduling policies. Importing this package registers all of them."""
from mosaic.schedulers import data_parallel, fifo, ilp, least_loaded, round_robin, tensor_parallel  # noqa: F401
from mosaic.schedulers.registry import SchedulerParams, available, get_scheduler, register, schedule

__all__ = ["SchedulerParams", "available", "get_scheduler", "register", "schedule"]
