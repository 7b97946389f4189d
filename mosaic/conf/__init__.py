"""Hydra config groups (yaml), a package so that Hydra finds them in an installed wheel."""
