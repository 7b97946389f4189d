"""The command line of `mosaic run` / `mosaic sweep`: the Hydra entry (main), the checks made before
Hydra runs (precheck), one job (job), Hydra callbacks (callbacks), signal handling (signals) and
the app's help (help)."""
