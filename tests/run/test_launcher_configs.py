"""The ready sweep-launcher configs (mosaic/conf/hydra/launcher/) compose with their plugins: a
user with SLURM or a Ray cluster only picks one. Each is checked where its plugin is installed
(CI installs hydra-submitit-launcher)."""
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
