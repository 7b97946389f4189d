"""Workloads: queries, the requests they fan out to, and (for replay) their realised outcomes."""
from mosaic.workload.types import Outcome, Query, Request, Workload, aggregator_request_id, expert_request_id

__all__ = ["Outcome", "Query", "Request", "Workload", "aggregator_request_id", "expert_request_id"]
