"""Does the simulator describe the machine? The fidelity suite (suite.py: the same plans simulated
and run on real engines, compared) and the profile check (profile_check.py: the profiler's own
batches timed again on this host against the profile's prediction)."""
