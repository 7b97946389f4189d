"""Time a profile's models' kernels on this machine's GPU: the cost model's linear, decode- and
prefill-attention terms, from each model's layer shapes (its n_layers, hidden_size and `arch`).

Writes the JSON a profile names in `engine.kernels` (its models then take those three terms from the
measurement; the rest of the profile is unchanged). Method: mosaic/fitting/gpu_kernels.py.

    python experiments/measure_gpu_kernels.py profile=mosaic/profiles/data/faster_moa_h200.yaml
    python experiments/measure_gpu_kernels.py profile=my.yaml models=Big device=cpu reps=2 repeats=3

On a GPU machine without MOSAIC's dependencies (torch and PyYAML only), the same measurement:
    python -m mosaic.fitting.gpu_kernels PROFILE.yaml OUT.json

Options (key=value): profile (the profile file), models (comma-separated, or all), device (cuda|cpu),
out (the JSON; default <profile>.kernels.json beside it), reps (calls per timing, at most), repeats
(timings per point, for the median and the spread).
"""
import json
import sys
from pathlib import Path

from mosaic.core.errors import ConfigError
from mosaic.fitting.options import int_option, parse_options

DEFAULTS = {"profile": "", "models": "all", "device": "cuda", "out": "", "reps": 10, "repeats": 5}


def main(argv: list[str]) -> None:
    try:
        cfg = parse_options(argv, DEFAULTS, __doc__)
        out, names, raw = _check(cfg)
        from mosaic.fitting.gpu_kernels import measure_profile

        try:
            result = measure_profile(cfg["profile"], device=cfg["device"], models=names,
                                     reps=int_option(cfg, "reps", 1), repeats=int_option(cfg, "repeats", 1))
        except (RuntimeError, ValueError) as e:   # no CUDA device; a model without its shapes
            raise ConfigError(str(e)) from None
        result["command"] = "python experiments/measure_gpu_kernels.py " + " ".join(argv)
        out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {out}")
        print(_uses(cfg["profile"], raw, out))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def _check(cfg: dict) -> tuple[Path, list[str] | None, dict]:
    """The output path, the models to time and the profile as read, refused before anything is
    measured."""
    from mosaic.fitting.gpu_kernels import arch_of
    from mosaic.profiles.schema import validate_profiles
    from mosaic.profiles.strict_yaml import load_yaml

    if not cfg["profile"]:
        raise ConfigError("profile=: give the profile file whose models to time, e.g. "
                          "profile=mosaic/profiles/data/faster_moa_h200.yaml")
    path = Path(cfg["profile"])
    if not path.is_file():
        raise ConfigError(f"profile={cfg['profile']}: no such file")
    if cfg["device"] not in ("cuda", "cpu"):
        raise ConfigError(f"device={cfg['device']}: give cuda or cpu")
    raw = load_yaml(path.read_text(encoding="utf-8"), str(path))
    validate_profiles(raw, str(path))   # the schema only: the kernels file it names may not exist yet
    names = None if cfg["models"] == "all" else [n.strip() for n in cfg["models"].split(",") if n.strip()]
    for n in names or raw["models"]:
        if n not in raw["models"]:
            raise ConfigError(f"models={cfg['models']}: no model '{n}' in {path} (it has {', '.join(raw['models'])})")
        try:
            arch_of(n, raw["models"][n])
        except ValueError as e:
            raise ConfigError(f"{path}: {e}") from None
    out = Path(cfg["out"]) if cfg["out"] else path.with_name(path.stem + ".kernels.json")
    if out.resolve() == path.resolve():
        raise ConfigError(f"out={cfg['out']}: that is the profile itself; name a .json file")
    if not out.parent.is_dir():
        raise ConfigError(f"out={cfg['out']}: no folder {out.parent}")
    return out, names, raw


def _uses(profile: str, raw: dict, out: Path) -> str:
    """Whether the profile (`raw`, as _check read it) reads the file just written (then it must
    load), or how to make it."""
    from mosaic.profiles import load_profiles

    named = raw["engine"].get("kernels")
    if named and (Path(profile).parent / named).resolve() == out.resolve():
        load_profiles(profile)
        return f"{profile} reads it (engine.kernels: {named}) and loads"
    return f"to use it, set engine.kernels: {out.name} in {profile} (a path relative to the profile's folder)"


if __name__ == "__main__":
    main(sys.argv[1:])
