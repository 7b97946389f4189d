"""Calibrate a profile to this machine: the profile check's batches, then the profile re-scaled by
them (mosaic/profiles/calibration.py), written as a new profile file that `workload.profiles`
(or `topology.profiles`) can name. Options: mosaic/conf/calibrate_profile.yaml."""
from __future__ import annotations

from pathlib import Path
from typing import Any


from mosaic.core.errors import ConfigError
from mosaic.core.rundir import write_atomic
from mosaic.fidelity.profile_check import ROOT, check_profile, report
from mosaic.profiles.calibration import GROUPS, calibrated_file, calibrated_yaml
from mosaic.profiles.strict_yaml import load_yaml


def calibrated_path(cfg: dict[str, Any]) -> Path:
    """`calibrated`, or outputs/profiles/<profile's name>.calibrated.yaml where it is null; relative
    paths from the repository, as the profile's own."""
    target = cfg.get("calibrated")
    if target in (None, ""):
        return ROOT / "outputs" / "profiles" / f"{Path(str(cfg.get('profile') or 'profile')).stem}.calibrated.yaml"
    p = Path(str(target))
    if p.suffix not in (".yaml", ".yml"):
        raise ConfigError(f"calibrated={target}: name a .yaml file (the calibrated profile is a profile file)")
    return p if p.is_absolute() else ROOT / p


def checked_path(check: dict[str, Any]) -> Path:
    """The profile file a check read (its `profile`: relative to the repository, or absolute)."""
    path = Path(check["profile"])
    return path if path.is_absolute() else ROOT / path


def calibrated_from(check: dict[str, Any]) -> dict[str, Any]:
    """The profile the check read, re-scaled by what it measured (validated as any profile file is)."""
    path = checked_path(check)
    raw = load_yaml(path.read_text(encoding="utf-8"), str(path))
    return calibrated_file(path, raw, check, check["profile"])


def write_calibrated(data: dict[str, Any], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, lambda f: f.write(calibrated_yaml(data)))


def calibrate(cfg: dict[str, Any]) -> tuple[dict[str, Any], Path]:
    """Check the profile on this machine's engines and write it calibrated; (the check, the file)."""
    target = calibrated_path(cfg)
    check = check_profile(cfg)
    write_calibrated(calibrated_from(check), target)
    return check, target


def summary(check: dict[str, Any], target: Path) -> str:
    """The check's report, then what the calibration changed per model and where it went."""
    lines = [report(check).rstrip("\n"), "", "Calibrated (step-cost terms: x per step / x decode / x prefill; load):", ""]
    for name, m in check["models"].items():
        s = m["scales"]
        lines.append(f"- {name}: " + " / ".join(f"x{s[g]:.3f}" for g in GROUPS) + f" ({s['how']}, fit error {s['error']:.1%}); load "
                     f"{m['load_s']:.1f} s (was {m['profile_load_s']:.1f} s)")
    try:
        shown = target.relative_to(ROOT)
    except ValueError:
        shown = target
    lines += ["", f"Wrote {shown}: run on it with workload.profiles={shown} (or topology.profiles=...)."]
    return "\n".join(lines) + "\n"
