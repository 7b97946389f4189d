"""Simulator speed: simulated requests per wall second and peak memory, by case and component."""
