"""Record real traces: chosen experts answer a question set on real engines, and each expert's
outputs are written as a trace file the `trace` workload reads (format `mosaic_json`).

    mosaic record --questions ../shared/data/questions/GPQA_test.json --experts Qwen,GLM \\
        --models tiny --out traces/gpqa --max-tokens 256

Each expert gets the Symbolic-MoE expert prompt (mosaic/workload/prompts.py) and generates naturally
(no replayed length) up to --max-tokens; its answer is the last "(X)" of its text, as in runs. The
experts are dealt over the workers, one engine session each (vllm_backend). A user with GPUs can so
supply the expert outputs the paper reproduction lacks (results/paper_comparison.md lists them), then point a
trace workload's `experts.<name>` at the files: {file: <name>.json, format: mosaic_json, ...}.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Sequence

import yaml

from mosaic.backends import make_backend
from mosaic.cluster import Cluster
from mosaic.config import CONF_DIR
from mosaic.core.arguments import ArgumentParser
from mosaic.core.errors import ConfigError
from mosaic.plan import Plan, Session, WorkerPlan
from mosaic.profiles import load_profiles
from mosaic.core.rundir import check_creatable_dir, check_writable_dir, write_text_atomic
from mosaic.workload.prompts import expert_prompt
from mosaic.workload.sources.question_files import load_questions, n_options
from mosaic.workload.tokens import estimate_tokens
from mosaic.workload.types import Request

FORMAT = "mosaic_json"


def registry(models: str) -> dict[str, Any]:
    """A model registry by name (mosaic/conf/models/<name>.yaml) or path to such a file."""
    path = Path(models) if models.endswith((".yaml", ".yml")) else CONF_DIR / "models" / f"{models}.yaml"
    if not path.is_file():
        raise ConfigError(f"--models: no model registry '{models}' ({path} does not exist); use tiny, paper or a "
                          "path to a registry YAML")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"--models {path}: not valid YAML ({' '.join(str(e).split())[:200]})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("models"), dict):
        raise ConfigError(f"--models {path}: not a model registry (a mapping with `models:` name -> entry, as "
                          "mosaic/conf/models/tiny.yaml)")
    return raw


def plan_for(experts: Sequence[str], requests: dict[str, Request], n_workers: int) -> Plan:
    """Experts dealt round robin over the workers, one session per expert with all its requests."""
    workers = []
    for w in range(n_workers):
        mine = experts[w::n_workers]
        workers.append(WorkerPlan(w, tuple(Session(e, tuple(r for r in requests if requests[r].model == e))
                                           for e in mine)))
    return Plan("expert", "record", tuple(workers))


def record(questions: Path, experts: Sequence[str], models: str, out: Path, max_tokens: int = 256,
           limit: int | None = None, n_workers: int = 2, device: str = "auto", profiles: str | None = None,
           kv_cache_gib: int = 1) -> dict[str, Path]:
    """Run the experts over the questions; write out/<expert>.json for each. Returns those paths."""
    if not experts or len(set(experts)) != len(experts):
        raise ConfigError(f"--experts: give distinct model names, comma-separated (got {list(experts)})")
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise ConfigError(f"--max-tokens must be an integer >= 1 (got {max_tokens!r})")
    if n_workers < 1:
        raise ConfigError(f"--workers must be >= 1 (got {n_workers})")
    qs = list(load_questions(Path(questions), "--questions"))[:limit]
    opts = [n_options(q["question"]) for q in qs]
    if min(opts) < 2:
        i = opts.index(min(opts))
        raise ConfigError(f"--questions: item {i} of {questions} has no '(A) ... (B)' options; recording supports "
                          "multiple-choice question sets (the expert prompt asks for a letter)")
    reg = registry(models)
    missing = [e for e in experts if e not in (reg.get("models") or {})]
    if missing:
        raise ConfigError(f"--experts: {missing} not in the model registry '{models}' "
                          f"(it has {sorted(reg.get('models') or {})})")
    requests = {}
    for e in experts:
        for i, q in enumerate(qs):
            prompt = expert_prompt(q["question"])
            requests[f"{i:05d}/{e}"] = Request(f"{i:05d}/{e}", f"{i:05d}", e, estimate_tokens(prompt), "expert", prompt)
    prof = load_profiles(profiles or ("tiny_cpu" if models == "tiny" else "paper_a100"))
    check_creatable_dir(Path(out), "--out")   # a settings error before the engine's (vLLM installed, models)
    backend = make_backend("vllm", Cluster.uniform(n_workers, prof.engine.memory_gib), prof, models=reg,
                           replay=False, max_tokens=max_tokens, device=device, kv_cache_gib=kv_cache_gib)
    # Made once everything it needs is checked (a refused run leaves no folder), before any engine.
    out = check_writable_dir(Path(out), "--out")
    trace = backend.run(plan_for(list(experts), requests, n_workers), requests, None)
    got = {r.request_id: r for r in trace.requests}
    written = {}
    for e in experts:
        rows = []
        for i, q in enumerate(qs):
            r = got[f"{i:05d}/{e}"]
            rows.append({"record_id": str(i), "question": q["question"], "gold_answer": q["gold_answer"],
                         "category": q.get("category"), "n_options": opts[i], "model": e,
                         "answer": r.answer, "output_tokens": r.output_tokens, "text": r.text,
                         # ran into max_tokens: the true length is longer (right-censored)
                         "censored": r.error is None and r.output_tokens >= max_tokens, "error": r.error})
        path = out / f"{e}.json"
        write_text_atomic(path, json.dumps(rows, indent=1) + "\n")
        written[e] = path
    return written


def main(argv: list[str] | None = None, prog: str | None = "mosaic record") -> int:
    """`prog`: the command the usage line names (None: the script's own file name)."""
    ap = ArgumentParser(prog=prog, description=__doc__)
    ap.add_argument("--questions", type=Path, required=True, help="a question file (JSON list of {question, gold_answer})")
    ap.add_argument("--experts", required=True, help="comma-separated model names of the registry")
    ap.add_argument("--models", default="tiny", help="model registry: tiny, paper, or a YAML path (default tiny)")
    ap.add_argument("--out", type=Path, required=True, help="folder for <expert>.json")
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--limit", type=int, default=None, help="only the first N questions")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--profiles", default=None, help="profile set for the engine settings (default by --models)")
    a = ap.parse_args(argv)
    for flag, value in (("--limit", a.limit), ("--max-tokens", a.max_tokens), ("--workers", a.workers)):
        if value is not None and value < 1:
            ap.error(f"{flag} must be >= 1 (got {value})")
    if a.out.exists() and not a.out.is_dir():
        ap.error(f"--out {a.out} is a file; name a folder for the <expert>.json files")
    try:
        paths = record(a.questions, [e for e in a.experts.split(",") if e], a.models, a.out, a.max_tokens, a.limit,
                       a.workers, a.device, a.profiles)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    errors, total = [], 0
    for e, p in paths.items():
        rows = json.loads(p.read_text())
        bad = [r["error"] for r in rows if r["error"]]
        errors += bad
        total += len(rows)
        print(f"wrote {p}: {len(rows)} records, {len(bad)} failed, {sum(r['censored'] for r in rows)} hit --max-tokens")
    failed = len(errors)
    if failed and failed == total:   # exit 1, as a run whose every request failed: said as an error
        first = errors[0]
        print(f"error: all {total} requests failed on the engine (recorded with their error); first error: "
              f"{' '.join(str(first).split())[:500]}", file=sys.stderr)
        return 1
    if failed:
        print(f"warning: {failed} requests failed on the engine (recorded with their error)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
