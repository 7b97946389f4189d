"""The run's settings: the structured-config schema (schema.py) and where the Hydra configs live."""
from pathlib import Path

# mosaic/conf: Hydra's config groups, shipped in the wheel (pyproject package-data).
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
