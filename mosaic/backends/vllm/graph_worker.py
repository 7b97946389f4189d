"""What runs inside one worker process of an agent-graph run: one vLLM engine for the whole run,
taking requests from its inbox queue while it steps (as vLLM's own server does), and streaming
every request that leaves it back to the parent.

Messages in (the inbox): {"op": "add", "rid", "prompt_token_ids" | "prompt" (a text: natural
generation, the model stops by itself), "max_tokens"},
{"op": "watch", "rid", "every"}, {"op": "cancel", "rid"}, {"op": "close"}. Messages out (the
shared queue), all with "worker": {"ready": True, "load_start_s", "load_end_s"},
{"stream": [rid, tokens generated]} (a watched request, every `every` tokens),
{"finished": {rid, start_s, first_token_s, finish_s, output_tokens, cancelled, cached_tokens}}, and
last {"done": True, "session": {...}} or {"fatal": traceback}.
Times are seconds from the run's t0 (one wall clock for the parent and every worker).
"""
from __future__ import annotations

import math
import os
import queue as queue_mod
import time
import traceback
from typing import Any

from mosaic.graphs.trace import is_prefill
from mosaic.backends.vllm.worker import start_engine, shutdown_engine, count_preemptions, isolate_from_script_dir

IDLE_POLL_S = 0.05   # an idle engine's wait for its next message
MIN_ANSWER_TOKENS = 16   # a natural prompt is cut to leave at least this room for the answer


def graph_worker_main(spec: dict[str, Any], inbox, out) -> None:
    os.environ.update(spec["env"])
    isolate_from_script_dir()
    w = spec["worker"]
    try:
        _serve(spec, inbox, out)
    except Exception:  # report, never hang the parent
        out.put({"worker": w, "fatal": traceback.format_exc(limit=5)})


def _serve(spec: dict[str, Any], inbox, out) -> None:
    from vllm import SamplingParams

    w, t0 = spec["worker"], spec["t0"]
    now = lambda: time.time() - t0  # noqa: E731
    load_start = now()
    engine = start_engine(spec["path"], spec["engine_args"])
    load_end = now()
    preempted = count_preemptions(engine)
    max_len = engine.model_config.max_model_len if hasattr(engine, "model_config") else spec["max_model_len"]
    out.put({"worker": w, "ready": True, "load_start_s": load_start, "load_end_s": load_end})
    live: dict[str, dict[str, Any]] = {}
    watch: dict[str, list[int]] = {}   # rid -> [every, next]
    served = 0
    closing = False
    while True:
        msgs = []
        if not engine.has_unfinished_requests():   # idle: wait a little for the next message
            try:
                msgs.append(inbox.get(timeout=IDLE_POLL_S))
            except queue_mod.Empty:
                pass
        while True:
            try:
                msgs.append(inbox.get_nowait())
            except queue_mod.Empty:
                break
        for m in msgs:
            if m["op"] == "add":
                natural = m.get("prompt") is not None
                ids = m.get("prompt_token_ids")
                if natural:   # a text: cut to leave room for an answer, as the context allows
                    ids = engine.get_tokenizer().encode(m["prompt"])[: max_len - MIN_ANSWER_TOKENS]
                params = SamplingParams(max_tokens=max(1, min(m["max_tokens"], max_len - len(ids))),
                                        ignore_eos=not natural, temperature=0.0, logprobs=1 if natural else None)
                engine.add_request(m["rid"], {"prompt_token_ids": ids}, params)
                live[m["rid"]] = {"rid": m["rid"], "start_s": now(), "first_token_s": None, "tokens": 0,
                                  "natural": natural, "prompt_tokens": len(ids)}
            elif m["op"] == "watch":
                watch[m["rid"]] = [m["every"], m["every"]]
            elif m["op"] == "cancel":
                rec = live.pop(m["rid"], None)
                if rec is not None:
                    engine.abort_request([m["rid"]])
                    t = now()
                    out.put({"worker": w, "finished": {"rid": rec["rid"], "start_s": rec["start_s"],
                                                       "first_token_s": rec["first_token_s"], "finish_s": t,
                                                       "output_tokens": rec["tokens"], "cancelled": True,
                                                       "cached_tokens": rec.get("cached", 0)}})
            elif m["op"] == "close":
                closing = True
        if engine.has_unfinished_requests():
            for o in engine.step():
                rec = live.get(o.request_id)
                if rec is None:   # aborted meanwhile
                    continue
                t = now()
                tokens = len(o.outputs[0].token_ids) if o.outputs else 0
                if tokens and rec["first_token_s"] is None:
                    rec["first_token_s"] = t
                rec["tokens"] = tokens
                rec["cached"] = getattr(o, "num_cached_tokens", None) or 0
                wt = watch.get(o.request_id)
                if wt is not None and not o.finished and tokens >= wt[1]:
                    out.put({"worker": w, "stream": [o.request_id, tokens]})
                    wt[1] = tokens + wt[0]
                if o.finished:
                    live.pop(o.request_id)
                    watch.pop(o.request_id, None)
                    served += not is_prefill(o.request_id)
                    done = {"rid": rec["rid"], "start_s": rec["start_s"], "first_token_s": rec["first_token_s"] or t,
                            "finish_s": t, "output_tokens": tokens, "cancelled": False, "cached_tokens": rec["cached"]}
                    if rec["natural"] and o.outputs:
                        c = o.outputs[0]
                        logp = getattr(c, "cumulative_logprob", None)
                        done.update(text=c.text, prompt_tokens=rec["prompt_tokens"],
                                    confidence=math.exp(logp / tokens) if logp is not None and tokens else None)
                    out.put({"worker": w, "finished": done})
        elif closing and not live:
            break
    run_end = now()
    shutdown_engine(engine, 0.0)   # closed only at the run's end: no session after it waits for the grace
    out.put({"worker": w, "done": True,
             "session": {"model": spec["model"], "load_start_s": load_start, "load_end_s": load_end,
                         "run_end_s": run_end, "n_requests": served,
                         "preemptions": preempted[0] if preempted else None}})
