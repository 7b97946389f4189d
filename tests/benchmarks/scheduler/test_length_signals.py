"""benchmarks/scheduler/length_signals.py: what category signals recover of the clairvoyant gain."""
from benchmarks.scheduler import length_signals as ls


def _row(stream, category, clair, cost, signal=True):
    best = min(clair, cost)
    gain = stream - best
    return {"workload": "w", "workers": 4, "stream": stream, "category": category, "clairvoyant": clair,
            "cost_aware": cost, "has_signal": float(signal), "best": best,
            "recovered": (stream - category) / gain if gain > 1e-9 else None}


def test_recovered_is_measured_against_the_faster_reference():
    rows = [_row(100.0, 95.0, 90.0, 80.0), _row(100.0, 100.0, 101.0, 102.0)]
    md = ls.render(rows, "cmd")
    assert "| w | 4 | 100 | 95 | 90 | 80 | 20.0% | 25% |" in md   # 5 of the 20 s the cost-aware dealing saves
    assert "n/a (no clairvoyant gain)" in md
    assert "faster than it on 1 of 2 rows and slower on 1" in md
    assert "25% of the clairvoyant gain recovered" in md
