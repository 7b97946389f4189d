"""Thin entry points, one per job: each parses its arguments and calls one package function.
Run them as scripts (`python experiments/run.py`) or as modules (`python -m experiments.run`)."""
