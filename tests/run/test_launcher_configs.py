"""The ready sweep-launcher configs (mosaic/conf/hydra/launcher/) compose with their plugins: a
user with SLURM or a Ray cluster only picks one. Each is checked where its plugin is installed
(CI installs both), the Ray one also by a real sweep on a local Ray head."""
import pytest
from hydra import compose, initialize_config_dir

from mosaic.config import CONF_DIR
from mosaic.config.schema import register_configs


def hydra_launcher(option: str):
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=[f"hydra/launcher={option}"], return_hydra_config=True).hydra.launcher


def test_slurm_launcher_config():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    launcher = hydra_launcher("slurm")
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher.timeout_min == 120 and launcher.cpus_per_task == 2 and launcher.partition is None


def test_ray_cluster_launcher_config():
    pytest.importorskip("hydra_plugins.hydra_ray_launcher")
    launcher = hydra_launcher("ray_cluster")
    assert launcher._target_.endswith("ray_launcher.RayLauncher")
    assert launcher.ray.init.address == "auto" and launcher.ray.remote.num_cpus == 1


@pytest.mark.slow
def test_ray_cluster_launcher_runs_a_sweep_on_a_local_ray_head(tmp_path):
    """The shipped config against a real `ray start --head` on this host, joined with its
    `address: auto` (here through RAY_ADDRESS, as `auto` reads it). It failed with the launcher's
    'object_store_memory must not be provided when connecting to an existing cluster'."""
    pytest.importorskip("hydra_plugins.hydra_ray_launcher")
    import json
    import os
    import shutil
    import signal
    import socket
    import subprocess
    import sys
    import tempfile
    import time
    from pathlib import Path

    from tests.helpers import config
    from mosaic.run.app import run

    root = Path(__file__).resolve().parents[2]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")   # Ray's socket paths must stay short
    head = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={port}",
                             "--node-ip-address=127.0.0.1", "--include-dashboard=false", "--num-cpus=2",
                             "--disable-usage-stats", f"--temp-dir={temp}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:   # the head's GCS takes connections
            assert head.poll() is None and time.monotonic() < deadline, "ray start --head did not come up"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        common = ["workload=synth_small", "workload.n_queries=40"]
        p = subprocess.run([sys.executable, "-m", "mosaic", "sweep", "hydra/launcher=ray_cluster", *common, "seed=0,1",
                            f"hydra.sweep.dir={tmp_path / 's'}"], cwd=root, capture_output=True, text=True,
                           timeout=600,
                           # the head's own session folder is not the default one, where a driver reads
                           # whether the cluster wants its token (Ray's token authentication)
                           env={**os.environ, "RAY_ADDRESS": f"127.0.0.1:{port}", "RAY_AUTH_MODE": "token"})
        assert p.returncode == 0, p.stderr[-3000:]
        for seed in (0, 1):   # each job ran, on the cluster, what the same run here gives
            (job,) = (tmp_path / "s").glob(f"seed={seed},*")
            s = json.loads((job / "summary.json").read_text())
            here = run(config(*common, f"seed={seed}")).summary
            assert s["expert_stage_s"] == here["expert_stage_s"] and s["n_queries"] == here["n_queries"] == 40
    finally:
        os.killpg(head.pid, signal.SIGTERM)   # --block: the head ends the processes it started
        head.wait(timeout=60)
        shutil.rmtree(temp, ignore_errors=True)
