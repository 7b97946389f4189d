"""The package's shape, checked from the source: no import cycle, no upward import, and plugins that
are one file plus one config file.

Every import statement counts, including those inside functions and under TYPE_CHECKING: a
function-level import that keeps a cycle alive is still a cycle."""
import ast
import textwrap
from pathlib import Path

import pytest

from mosaic.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mosaic",)

# Layers, lowest first: a module may import its own layer or a lower one, never a higher one.
# Run-level code (run) sits above the components it assembles; analysis and fitting above it.
LAYERS = [
    ("mosaic.core",),
    ("mosaic.config", "mosaic.conf"),
    ("mosaic.profiles", "mosaic.cluster", "mosaic.plan", "mosaic.trace"),
    ("mosaic.engine",),     # the engine model: step costs, step loops, sessions, host contention
    ("mosaic.workload", "mosaic.graphs"),
    ("mosaic.costs",),
    ("mosaic.runtime",),    # what decides while a stage runs: late binding, replicas added mid-run
    ("mosaic.schedulers", "mosaic.backends"),      # mosaic.backends: the interface and registries
    ("mosaic.backends.sim", "mosaic.backends.vllm"),
    ("mosaic.run",),
    ("mosaic.cli",),        # the command line: Hydra entry, checks before Hydra, one job, callbacks
    ("mosaic.analysis", "mosaic.fitting", "mosaic.fidelity"),
    ("mosaic.__main__",),   # the `mosaic` command: dispatches to run and analysis
]
# The backends run plans: they read the hand-off types and the model profiles, nothing that plans
# or analyses (the scheduler core never imports a backend either: the layers above see to that).
BACKEND_MAY_IMPORT = ("mosaic.core", "mosaic.config", "mosaic.profiles", "mosaic.cluster", "mosaic.plan",
                      "mosaic.trace", "mosaic.engine", "mosaic.runtime", "mosaic.workload.types", "mosaic.workload.prompts",
                      "mosaic.workload.tokens", "mosaic.backends", "mosaic.graphs.shape", "mosaic.graphs.trace",
                      "mosaic.graphs.outcomes")
BACKENDS = ("mosaic.backends.sim", "mosaic.backends.vllm")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `name` imports (a `from package import module` counts as the module)."""
    out = set()
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known)
    return {m for m in out if m in known and m != name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {n: imports(n, p, set(mods)) for n, p in mods.items()}


def layer(name: str) -> int:
    """The layer of the longest prefix that names `name`'s package (mosaic.backends.sim before
    mosaic.backends)."""
    hits = [(len(p), i) for i, prefixes in enumerate(LAYERS) for p in prefixes
            if name == p or name.startswith(p + ".")]
    if not hits:
        raise AssertionError(f"module {name} belongs to no layer; add its package to LAYERS")
    return max(hits)[1]


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_the_checker_sees_a_cycle_and_a_function_level_upward_import(tmp_path):
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]
    src = tmp_path / "x.py"
    src.write_text("def f():\n    from mosaic.run import app\n    from . import plan\n")
    assert imports("mosaic.x", src, {"mosaic.run", "mosaic.run.app", "mosaic.plan"}) == {
        "mosaic.run", "mosaic.run.app", "mosaic.plan"}
    assert layer("mosaic.run.app") > layer("mosaic.schedulers.ilp") > layer("mosaic.core.errors")


def test_the_package_has_no_import_cycle():
    assert cycles(graph()) == []


def test_no_module_imports_a_higher_layer():
    upward = [f"{a} -> {b}" for a, deps in sorted(graph().items()) for b in sorted(deps) if layer(b) > layer(a)]
    assert upward == []


def test_backends_import_only_hand_off_types_and_profiles():
    bad = [f"{a} -> {b}" for a, deps in sorted(graph().items()) if a.startswith(BACKENDS)
           for b in sorted(deps) if not b.startswith(BACKEND_MAY_IMPORT)
           or (b.startswith(BACKENDS) and b.split(".")[2] != a.split(".")[2])]
    assert bad == []


def test_the_product_does_not_import_the_benchmarks():
    """benchmarks/ sits beside the package (not in the wheel): nothing in mosaic may need it."""
    bad = [name for name, path in sorted(modules().items())
           for n in ast.walk(ast.parse(path.read_text()))
           if isinstance(n, (ast.Import, ast.ImportFrom))
           and any(m.split(".")[0] == "benchmarks" for m in
                   ([a.name for a in n.names] if isinstance(n, ast.Import) else [n.module or ""]))]
    assert bad == []


def private_imports(path: Path) -> list[str]:
    """`from x import _name` of a project module (a private name is its module's own business)."""
    return [f"{n.module}.{a.name}" for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("mosaic")
            for a in n.names if a.name.startswith("_") and not a.name.startswith("__")]


def test_no_module_imports_a_private_name_of_another():
    bad = [f"{name}: {x}" for name, path in sorted(modules().items()) for x in private_imports(path)]
    bad += [f"{p.relative_to(ROOT)}: {x}" for d in ("experiments", "benchmarks") for p in sorted((ROOT / d).rglob("*.py"))
            for x in private_imports(p)]
    assert bad == []


def test_no_test_loads_a_script_by_path():
    """Entry points run as modules (runpy.run_module, `python -m`), as users run them."""
    calls = ("run_" + "path(", "spec_from_" + "file_location(")
    bad = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "tests").rglob("*.py"))
           if any(c in p.read_text() for c in calls)]
    assert bad == []


def test_experiments_are_thin_and_import_no_script():
    for script in (ROOT / "experiments").glob("*.py"):
        text = script.read_text()
        assert "sys.path" not in text, f"{script.name} edits sys.path"
        names = {n.module for n in ast.walk(ast.parse(text)) if isinstance(n, ast.ImportFrom) and n.module}
        assert not any(n.split(".")[0] == "experiments" or (ROOT / "experiments" / f"{n}.py").exists()
                       for n in names), f"{script.name} imports another script"


# ---------------------------------------------------------------- plugins: one file + one config file

TOY = textwrap.dedent('''
    """A user's own scheduler, backend and workload source, outside the mosaic package."""
    from dataclasses import replace

    from mosaic.backends import BACKENDS
    from mosaic.schedulers import register, get_scheduler
    from mosaic.workload.build import build_workload
    from mosaic.workload.sources import register_source

    CALLS = []


    @register("toy_policy")
    def toy_policy(problem, params):
        CALLS.append("scheduler")
        return get_scheduler("round_robin")(problem, params)


    @BACKENDS.register("toy_backend")
    class ToyBackend:
        name = "toy_backend"

        def __init__(self, cluster, profiles, models=None, **options):
            from mosaic.backends.sim.backend import SimBackend
            self.inner = SimBackend(cluster, profiles)

        def run(self, plan, requests, replay):
            CALLS.append("backend")
            return replace(self.inner.run(plan, requests, replay), backend=self.name)


    @register_source("toy_source")
    def toy_source(cfg, profiles, seed):
        CALLS.append("source")
        return build_workload({**cfg, "kind": "synthetic", "plugin": None}, profiles, seed)
''')


def test_a_new_scheduler_backend_and_source_are_one_file_plus_config(tmp_path, monkeypatch):
    from mosaic.run.app import run
    from mosaic.run.builder import compose

    (tmp_path / "toy_plugin.py").write_text(TOY)
    conf = tmp_path / "conf"
    for group, body in (("scheduler", "name: toy_policy\nplugin: toy_plugin\n"),
                        ("backend", "name: toy_backend\nplugin: toy_plugin\n"),
                        ("workload", "name: toy\nkind: toy_source\nplugin: toy_plugin\npreset: gpqa\nn_queries: 12\n")):
        (conf / group).mkdir(parents=True)
        (conf / group / "toy.yaml").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = compose(["scheduler=toy", "backend=toy", "workload=toy", f"hydra.searchpath=[file://{conf}]"])
    out = run(cfg)
    import toy_plugin

    assert {"scheduler", "backend", "source"} <= set(toy_plugin.CALLS)
    s = out.summary
    assert s["scheduler"] == "toy_policy" and s["backend"] == "toy_backend" and s["n_queries"] == 12
    assert out.result.expert.trace.backend == "toy_backend"


def test_a_plugin_that_does_not_register_its_name_is_a_config_error(tmp_path, monkeypatch):
    from mosaic.run.builder import build_run, compose

    (tmp_path / "empty_plugin.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=r"scheduler.name: unknown scheduler 'ghost'; choose one of \[.*'ilp'"):
        build_run(compose(["scheduler.name=ghost", "scheduler.plugin=empty_plugin"]))
    with pytest.raises(ConfigError, match=r"scheduler.plugin: cannot import 'no_such_module'"):
        build_run(compose(["scheduler.name=ghost", "scheduler.plugin=no_such_module"]))


def test_a_plugin_beside_a_name_it_does_not_define_is_a_config_error(tmp_path, monkeypatch):
    """Before: the plugin was not even imported, and the run used the built-in policy with exit 0."""
    from mosaic.run.builder import build_run, compose

    (tmp_path / "mine_plugin.py").write_text(
        "from mosaic.schedulers import register, get_scheduler\n\n\n"
        "@register('mine')\ndef mine(problem, params):\n    return get_scheduler('round_robin')(problem, params)\n")
    (tmp_path / "nothing_plugin.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=r"scheduler.plugin=mine_plugin registers mine, not scheduler.name=engine_aware; "
                                          r"set scheduler.name to its scheduler"):
        build_run(compose(["workload=smoke", "scheduler.plugin=mine_plugin"]))
    with pytest.raises(ConfigError, match=r"backend.plugin=nothing_plugin registers no backend"):
        build_run(compose(["workload=smoke", "backend.plugin=nothing_plugin"]))
    assert build_run(compose(["workload=smoke", "scheduler.name=mine", "scheduler.plugin=mine_plugin"]))
