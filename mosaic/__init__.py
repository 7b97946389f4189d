"""MOSAIC: Mixture-of-Agents inference scheduling (ILP placement + adaptive aggregation)."""
__version__ = "0.1.0"
