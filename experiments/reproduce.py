"""Reproduce the paper's table and figures: sweep -> collect -> figures, in one command.

    python experiments/reproduce.py                 # full sweep (conf/paper_sweep.yaml), ~2 min here
    python experiments/reproduce.py seed=0          # extra Hydra overrides go to the sweep

Progress: the joblib launcher prints each batch of finished jobs.
"""
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def step(title: str, cmd: list[str]) -> None:
    print(f"\n== {title}: {' '.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True)
    print(f"== {title} done in {time.perf_counter() - t0:.0f} s", flush=True)


def main() -> None:
    sweep = ROOT / "multirun" / "paper"
    if sweep.exists():
        shutil.rmtree(sweep)  # a stale run must not leak into the table
    py = sys.executable
    step("sweep", [py, "experiments/run.py", "--config-name", "paper_sweep", "-m",
                   "hydra/job_logging=disabled", *sys.argv[1:]])
    step("collect", [py, "experiments/collect.py", "--sweep", str(sweep)])
    step("figures", [py, "experiments/figures.py"])


if __name__ == "__main__":
    main()
