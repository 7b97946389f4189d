"""Scheduling policies, one file each, found by name through the registry (mosaic/schedulers/registry.py)."""
from mosaic.schedulers.registry import SCHEDULERS, available, get_scheduler, register, schedule

__all__ = ["SCHEDULERS", "available", "get_scheduler", "register", "schedule"]
