"""Real executor: runs a Plan on vLLM engines, one OS process per worker, and returns a Trace."""
