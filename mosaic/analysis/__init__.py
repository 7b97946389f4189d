"""Analysis over finished runs: tables, figures, the paper's table, fidelity against real engines."""
from mosaic.analysis.runs import load_requests, load_runs

__all__ = ["load_requests", "load_runs"]
