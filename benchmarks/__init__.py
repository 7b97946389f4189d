"""Benchmarks of the scheduler core, apart from the installed product: nothing on a run's path
imports them, and the wheel does not ship them. Run from the repository root, one entry point
each: `python -m benchmarks.scheduler` (the benchmark), then `python -m benchmarks.scheduler.losses`,
`.information_gap` and `.length_signals` on its table."""
