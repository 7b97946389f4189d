"""Compare two agent-graph run folders of one graph request by request, layer by layer.

    python experiments/compare_graph_runs.py outputs/graph_sim outputs/graph_vllm

Prints per layer the medians of hand-off, TTFT, decode time per token, duration and cached prompt
tokens of each run, the median per-request ratio (second / first), and per-query latency p50/p90.
Method: mosaic/analysis/graph_compare.py.
"""
import sys
from pathlib import Path

from mosaic.analysis.graph_compare import compare_graph_runs, render
from mosaic.core.arguments import ArgumentParser


def main() -> None:
    ap = ArgumentParser(description=__doc__)
    ap.add_argument("first", type=Path, help="a run folder (e.g. backend=sim)")
    ap.add_argument("second", type=Path, help="a run folder of the same graph (e.g. backend=vllm)")
    args = ap.parse_args()
    try:
        table, latency = compare_graph_runs(args.first, args.second)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(render(args.first, args.second, table, latency), end="")


if __name__ == "__main__":
    main()
