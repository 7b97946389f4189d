"""The scheduler benchmark: instances, a lower bound on the expert stage's makespan (bench.py,
packing_bound.py), a clairvoyant reference plan (clairvoyant.py, dealing.py), and the analyses of
its table (losses.py, information_gap.py, length_signals.py; table.py reads it back)."""
