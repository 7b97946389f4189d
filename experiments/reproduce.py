"""Reproduce the paper's table and figures: sweep -> collect -> figures, in one command.

    python experiments/reproduce.py                 # every sweep in SWEEPS, then collect and figures
    python experiments/reproduce.py seed=0          # extra Hydra overrides go to every sweep

Progress: the joblib launcher prints each batch of finished jobs.
"""
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SWEEP_ROOT = ROOT / "multirun" / "paper"

# (folder under multirun/paper, sweep config in conf/): the paper's experiment, the other policies,
# then one small multirun per variant so the grid stays small. The collector tells them apart by
# the `settings` each run records, not by folder.
SWEEPS = [
    ("main", "paper_sweep"),                       # ilp (K=2) + round_robin, 6 workloads, 3 taus, seeds 0-2
    ("policies", "paper_sweep_policies"),          # fifo, least_loaded, data_parallel at tau=2/3
    ("routing_paper_table3", "paper_sweep_table3"),
    ("K", "paper_sweep_k"),                        # K = 3 and no limit (ilp only)
    ("placement_scheduled", "paper_sweep_placement"),
    ("rr_order_pool", "paper_sweep_rr_pool"),
    ("replacement_false", "paper_sweep_no_replacement"),
]


def step(title: str, cmd: list[str]) -> None:
    print(f"\n== {title}: {' '.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True)
    print(f"== {title} done in {time.perf_counter() - t0:.0f} s", flush=True)


def main() -> None:
    sweep = SWEEP_ROOT
    if sweep.exists():
        shutil.rmtree(sweep)  # a stale run must not leak into the table
    py = sys.executable
    for folder, config in SWEEPS:
        step(f"sweep {folder}", [py, "experiments/run.py", "--config-name", config, "-m",
                                 f"hydra.sweep.dir={sweep / folder}", "hydra/job_logging=disabled", *sys.argv[1:]])
    step("collect", [py, "experiments/collect.py", "--sweep", str(sweep)])
    step("shard throughput (Fig. 3b)", [py, "experiments/shard_throughput.py"])
    step("figures", [py, "experiments/figures.py"])


if __name__ == "__main__":
    main()
