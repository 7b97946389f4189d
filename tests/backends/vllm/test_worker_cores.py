"""A worker starts its engines on its own cores and hands serving back the usual mask (or, with
cpu_confine=always, keeps it)."""
import os
import subprocess
import sys

import pytest

from mosaic.backends.vllm.worker import env_cores, own_cores_at_start


def test_env_cores_reads_vllm_bind_lists():
    assert env_cores({"VLLM_CPU_OMP_THREADS_BIND": "0|1"}) == {0, 1}
    assert env_cores({"VLLM_CPU_OMP_THREADS_BIND": "0,2-3"}) == {0, 2, 3}
    assert env_cores({"VLLM_CPU_OMP_THREADS_BIND": "auto"}) == set()
    assert env_cores({"CUDA_VISIBLE_DEVICES": "0"}) == set()


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs CPU affinity and at least two cores")
def test_start_is_confined_and_the_started_process_gets_the_mask_back():
    mask = set(os.sched_getaffinity(0))
    core = min(mask)
    env = {"VLLM_CPU_OMP_THREADS_BIND": str(core)}
    with own_cores_at_start(env):
        assert os.sched_getaffinity(0) == {core}
        # stands for vLLM's engine-core process: it inherits the confined mask while it starts
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        assert os.sched_getaffinity(child.pid) == {core}
    try:
        assert os.sched_getaffinity(0) == mask
        assert os.sched_getaffinity(child.pid) == mask
    finally:
        child.kill()
        child.wait()


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs CPU affinity and at least two cores")
def test_confined_always_keeps_the_engine_and_what_it_starts_on_the_workers_cores():
    mask = set(os.sched_getaffinity(0))
    core = min(mask)
    env = {"VLLM_CPU_OMP_THREADS_BIND": str(core), "MOSAIC_CPU_CONFINE": "always"}
    child = None
    try:
        with own_cores_at_start(env):
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        assert os.sched_getaffinity(0) == {core}   # the client: serving stays on the worker's core
        assert os.sched_getaffinity(child.pid) == {core}   # and the engine-core process
    finally:
        os.sched_setaffinity(0, mask)   # this test process goes on to run others
        if child is not None:
            child.kill()
            child.wait()


def test_no_confinement_without_a_core_list_or_when_it_covers_the_mask():
    mask = set(os.sched_getaffinity(0))
    for env in ({}, {"VLLM_CPU_OMP_THREADS_BIND": ",".join(map(str, sorted(mask)))}):
        with own_cores_at_start(env):
            assert os.sched_getaffinity(0) == mask
