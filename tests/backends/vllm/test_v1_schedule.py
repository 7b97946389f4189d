"""The simulator's V1 engine against vLLM's own scheduler: the same requests on a real engine
(in-process engine core, its schedule() wrapped to record each step) and on mosaic/engine/v1.py must
schedule the same tokens for the same requests at every step, preemptions included."""
import multiprocessing as mp
import os

import pytest

pytestmark = pytest.mark.vllm

PROMPTS = [300, 200, 150, 500, 100, 250]
OUTPUTS = [200, 150, 300, 50, 250, 100]


def _real_schedule(blocks: int, queue) -> None:
    os.environ.update({"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_OMP_THREADS_BIND": "0",
                       "OMP_NUM_THREADS": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "CUDA_VISIBLE_DEVICES": ""})
    from vllm import EngineArgs, LLMEngine, SamplingParams

    from mosaic.backends.vllm.backend import prompt_ids
    from mosaic.backends.vllm.tiny_models import ensure_tiny_model

    path = ensure_tiny_model("Qwen", hidden_size=256, layers=2, heads=4, kv_heads=2, intermediate_size=512)
    engine = LLMEngine.from_engine_args(EngineArgs(
        model=str(path), load_format="dummy", max_model_len=1024, max_num_seqs=4, max_num_batched_tokens=256,
        num_gpu_blocks_override=blocks, dtype="bfloat16", enforce_eager=True, disable_log_stats=True))
    sched = engine.engine_core.engine_core.scheduler
    steps, original = [], sched.schedule

    def schedule(*a, **k):
        out = original(*a, **k)
        # vLLM suffixes the ids it is given ("r0" -> "r0-<random>")
        steps.append(({k.split("-")[0]: n for k, n in out.num_scheduled_tokens.items()},
                      sorted(k.split("-")[0] for k in out.preempted_req_ids or ())))
        return out

    sched.schedule = schedule
    for i, (p, o) in enumerate(zip(PROMPTS, OUTPUTS)):
        engine.add_request(f"r{i}", {"prompt_token_ids": prompt_ids(f"r{i}", p)},
                           SamplingParams(max_tokens=o, ignore_eos=True, temperature=0.0))
    while engine.has_unfinished_requests():
        engine.step()
    queue.put({"steps": [s for s in steps if s[0] or s[1]], "block_size": sched.block_size})


@pytest.mark.parametrize("blocks", [10, 17])   # 10: two preemptions and prefix-cache resumes
def test_simulated_v1_steps_match_vllms_scheduler(blocks):
    from mosaic.engine.v1 import V1Engine
    from tests.helpers import UnitCost, drive

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_real_schedule, args=(blocks, q))
    p.start()
    real = q.get(timeout=600)
    p.join(60)
    eng = V1Engine(UnitCost(), blocks - 1, real["block_size"], 4, 256, record_steps=True)
    drive(eng, [(f"r{i}", pr, o) for i, (pr, o) in enumerate(zip(PROMPTS, OUTPUTS))])
    sim = [(dict(r.scheduled), sorted(r.preempted)) for r in eng.steps_log for _ in range(r.repeat)]
    real_steps = [(s, sorted(pre)) for s, pre in real["steps"]]
    assert len(sim) == len(real_steps)
    first = next((i for i, (a, b) in enumerate(zip(sim, real_steps)) if a != b), None)
    assert first is None, f"step {first}: simulated {sim[first]} vs vLLM {real_steps[first]}"
    if blocks == 10:
        assert eng.result.preemptions == sum(len(pre) for _, pre in real_steps) > 0
