"""SimPy discrete-event backend: a GPU cluster running Plans on a modelled vLLM-style engine."""
