"""Before Hydra runs: the command line checked, so that Hydra's own config errors are one line and
exit status 2, and the run (or sweep) directory claimed, so that no second run writes into it.

Hydra's own config errors (an unknown group option, a value of the wrong type, a key the config
lacks, a bad value anywhere in a -m sweep) would otherwise end the process with a multi-line report
and exit status 1, and in a sweep only once its jobs start. Here the config is composed first as
Hydra will compose it, every job of a basic sweep included (and each distinct job's run built once,
so what a built run refuses stops the sweep before its first job).
"""
from __future__ import annotations

import os
import re
import sys
import traceback
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mosaic.config.mappings import for_hydra, given_whole, replace_given
from mosaic.core.errors import ConfigError
from mosaic.core.interrupts import raise_if_interrupted
from mosaic.core.rundir import (ERROR_FILE, LOCK_FILE, SUMMARY_FILE, SWEEP_LOCK_FILE, RunDirError, claim_run_dir,
                                debug_tracebacks, held_elsewhere, one_line, record_failure, record_interrupted_jobs,
                                run_folders)
from mosaic.cli.signals import Terminated


def _mapping_of(key: str) -> str | None:
    """The free-form mapping (workload.experts, models.models, ...) `key` is an entry of, if any."""
    from mosaic.config.schema import free_form_mappings

    return next((m for m in free_form_mappings() if key.startswith(m + ".")), None)


def check_overrides(overrides: Sequence[str]) -> None:
    """A setting given twice on one command line: Hydra keeps the last silently, which hides a
    typo'd sweep or a pasted command; refused, naming both. A deleted setting (~key) likewise,
    except an entry of a free-form mapping (workload.experts, models.models, ...): dropped, nothing
    falls back."""
    seen: dict[str, str] = {}
    for o in overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        if o.startswith("~") and not key.startswith(("hydra.", "hydra/")) and not _mapping_of(key):
            raise ConfigError(f"{o} deletes a setting, which then quietly falls back to the schema's default; set the "
                              f"value you want instead ({key}=...)")
        if key in seen:
            raise ConfigError(f"{key} is set twice on the command line ({seen[key]} and {o}); keep one")
        seen[key] = o


# The basic sweeper, as configs name it (hydra.sweeper._target_): the one whose jobs are checked up front.
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
_PLAIN_PATH = re.compile(r"^[^'\\\s${}]+$")   # a directory Hydra's override grammar takes in quotes


class HydraConfigError(ConfigError):
    """Hydra could not compose the config for these overrides (exit status 2)."""


_NOT_A_SETTING = re.compile(r"Could not override '([^']+)'")


def run_message(e: BaseException) -> str:
    """hydra_message for a run's command line, where a key the config lacks gets the nearest
    setting instead of Hydra's advice ("use +key=value": a key nothing reads, which the run then
    refuses)."""
    unknown = _NOT_A_SETTING.search(str(e))
    if not unknown:
        return hydra_message(e)
    import difflib

    from mosaic.run.builder import setting_names

    key = unknown.group(1)
    mapping = _mapping_of(key)
    if mapping is not None:   # Hydra's own advice was right here, only unexplained
        from mosaic.config.schema import WHOLE_MAPPINGS

        name = key[len(mapping) + 1:].split(".")[0]
        whole = (f", or give the whole mapping as {mapping}={{...}} (its entries are then the ones given)"
                 if mapping in WHOLE_MAPPINGS else "")
        return f"{key}: {mapping} has no entry {name} to change; add it with +{mapping}.{name}=...{whole}"
    top, dotted = setting_names()
    near = difflib.get_close_matches(key, top + dotted, 1)
    return (f"{key} is not a setting" + (f" (did you mean {near[0]}?)" if near else "")
            + "; the settings and config groups are in mosaic/config/schema.py and mosaic/conf/")


def hydra_message(e: BaseException) -> str:
    """One line for a Hydra composition error: the message and its OmegaConf cause, without the
    search path, key details and HYDRA_FULL_ERROR hint; an unknown group option lists the choices."""
    from hydra.errors import MissingConfigException

    import yaml

    if isinstance(e, MissingConfigException) and e.options:
        head = str(e).split("\n\n")[0].strip()
        return f"{one_line(head)}; choose one of: {', '.join(e.options)}"
    if isinstance(e, yaml.YAMLError):   # its message names the file, line and column
        return one_line(f"a config file is not valid YAML: {e}", 1500)
    parts = []
    for exc in (e, e.__cause__):
        if exc is None:
            continue
        text = str(exc).split("Config search path:")[0]
        text = "; ".join(ln.strip().rstrip(".") for ln in text.splitlines() if ln.strip()
                         and not ln.strip().startswith(("full_key:", "reference_type=", "object_type=")))
        if text and text not in " ".join(parts):
            parts.append(text)
    return one_line("; ".join(parts) or type(e).__name__, 1500)


def _override_value(args: Sequence[str], key: str) -> str | None:
    """The last value given to `key` on the command line (plain `key=value`), if any."""
    out = None
    for a in args:
        k, eq, v = a.partition("=")
        if eq and k.lstrip("+~") == key:
            out = v
    return out


def _compose(configs: tuple[Path, Path | None], job_name: str, config_name: str,
             overrides: Sequence[str]) -> DictConfig:
    """Compose as the run will: `configs` is the primary config directory and the one --config-dir
    adds to the search path (or None); a mapping given whole is that mapping (replace_given)."""
    from hydra import compose, initialize_config_dir

    config_dir, extra = configs
    if extra is not None:
        overrides = [f"hydra.searchpath=['file://{extra}']", *overrides]
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3", job_name=job_name):
        try:
            return replace_given(compose(config_name=config_name, overrides=list(overrides),
                                         return_hydra_config=True), overrides)
        except AssertionError as e:
            # OmegaConf asserts when an override sets a key below a setting that is null
            # (hydra.sweeper.params.seed=3: params is null); name the override instead.
            if "Unexpected type for root" not in str(e):
                raise
            from hydra.errors import ConfigCompositionException

            groups = [o for o in overrides if "." not in o.split("=", 1)[0]]
            base = compose(config_name=config_name, overrides=groups, return_hydra_config=True)
            absent = object()
            for o in overrides:
                key = o.split("=", 1)[0].lstrip("+~")
                if "." in key and OmegaConf.select(base, key.rsplit(".", 1)[0], default=absent) is None:
                    parent, leaf = key.rsplit(".", 1)
                    raise ConfigCompositionException(
                        f"{o}: {parent} is null, so it has no key {leaf}; set {parent} as a whole "
                        f"(e.g. '{parent}={{{leaf}: ...}}')") from None
            raise


def _composition_errors() -> tuple[type[BaseException], ...]:
    import yaml
    from hydra.errors import HydraException

    # A config file that is not valid YAML (one of a --config-dir's, say) fails in the YAML parser.
    return (HydraException, OmegaConfBaseException, yaml.YAMLError)


def drop_refused_tool_dir() -> None:
    """A measurement tool refused its options after Hydra made its run folder (outputs/<tool>/<time>):
    where that folder holds only Hydra's own files (.hydra/, an empty log), nothing of the tool's,
    it is removed, so a refusal leaves nothing behind."""
    import shutil

    from hydra.core.hydra_config import HydraConfig

    try:
        d = Path(HydraConfig.get().runtime.output_dir)
    except Exception:   # noqa: BLE001 -- not under Hydra (a test): nothing was made
        return
    mine = [f for f in d.rglob("*") if f.is_file() and ".hydra" not in f.relative_to(d).parts]
    if d.is_dir() and all(f.stat().st_size == 0 for f in mine):
        shutil.rmtree(d, ignore_errors=True)


def check_tool_args(config_dir: Path, config_name: str, args: Sequence[str]) -> None:
    """For the measurement tools' Hydra entry points (check_profile.py, profile_models.py), which
    claim no run directory: compose their config as Hydra will; a config error (an unknown key, a
    value of the wrong type) is one line on stderr and exit status 2, before any engine starts.
    --config-dir and --config-path are followed as Hydra follows them (a missing one is the same
    one line); help, -m and the other flags go to Hydra unchanged."""
    from mosaic.cli.hydra_args import args_parser

    try:
        ns = args_parser().parse_args(list(args))
    except SystemExit:   # argparse's own usage error: Hydra reports it
        return
    if (ns.help or ns.hydra_help or ns.version or ns.info or ns.shell_completion or ns.experimental_rerun
            or ns.multirun):
        return
    overrides = list(ns.overrides or [])
    configs = _config_dirs(ns, config_dir, overrides, None, ())
    if configs is None:
        return
    try:
        _compose(configs, config_name, ns.config_name or config_name, overrides)
    except _composition_errors() as e:
        print(f"error: {hydra_message(e)}", file=sys.stderr)
        sys.exit(2)


def _dir_of(cfg: DictConfig, key: str) -> str | None:
    """hydra.<key> as Hydra will resolve it, or None when it depends on what only Hydra's run
    sets (hydra.job.*, hydra.runtime.*) or cannot be resolved here."""
    node, leaf = key.rsplit(".", 1)
    raw = str(OmegaConf.to_container(OmegaConf.select(cfg, node), resolve=False).get(leaf) or "")
    if "${hydra." in raw:
        return None
    try:
        return str(OmegaConf.select(cfg, key, throw_on_missing=True))
    except OmegaConfBaseException:
        return None


def _fail_up_front(message: str, directory: str | None, overrides: Sequence[str],
                   error: BaseException | None = None, hydra_leftovers: Sequence[str] = ()) -> None:
    """Hydra's config error: one line, error.json where the run directory is known (an earlier
    run's outputs and `hydra_leftovers` removed: they are not this run's), exit 2."""
    if error is not None and debug_tracebacks():
        traceback.print_exception(error, file=sys.stderr)
    if directory:
        task = [o for o in overrides if not o.lstrip("+~").startswith(("hydra.", "hydra/"))]
        try:
            with claim_run_dir(Path(directory), also=hydra_leftovers):
                record_failure(Path(directory), task, HydraConfigError(message), 2, "config",
                               error_type=type(error or HydraConfigError(message)).__name__)
        except (RunDirError, OSError):
            pass
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


@contextmanager
def hydra_prepared(args: Sequence[str], config_dir: Path, job_name: str) -> Iterator[list[str]]:
    """Check a command line before Hydra runs it; yields the arguments to give Hydra.

    Hydra's own config errors (an unknown group option, a value of the wrong type, a key the
    config lacks, a bad value anywhere in a -m sweep) would otherwise end the process with a
    multi-line report and exit status 1, and in a sweep before any job runs. Here the config is
    composed first as Hydra will compose it, every job of a basic sweep included: such an error is
    one line on stderr and exit status 2 (error.json too when hydra.run.dir is given). A sweep
    whose jobs would share a directory is refused the same way.

    The run directory (a sweep's directory) is then resolved, checked and claimed
    (mosaic/core/rundir.py: claim_run_dir), and pinned as an override, so that the directory Hydra
    writes its .hydra/ config into is the one this process holds: a second run into it is refused
    before Hydra touches it. Held until the block ends.

    --config-path and --config-dir are followed as Hydra follows them. Help and --info command
    lines go to Hydra unchanged, as does any command line this check cannot handle (Hydra then
    reports it its own way)."""
    from mosaic.config.schema import register_configs

    register_configs()   # the configs compose against the schema, whoever calls this
    claimed: list[Path] = []   # the single run's directory, once claimed
    swept: list[Path] = []     # the sweep's directory, once claimed
    with ExitStack() as held:
        try:
            out = _prepare(list(args), config_dir, job_name, held, claimed, swept)
        except Exception:  # noqa: BLE001 - not a config error this check knows: Hydra's to report
            if debug_tracebacks():
                traceback.print_exc()
            held.close()
            out = list(args)
        try:
            raise_if_interrupted()   # a Ctrl-C during the check whose exception a library swallowed
            yield out
        except (KeyboardInterrupt, Terminated) as e:
            # Interrupted before the job took over (Hydra still setting up): its directory still
            # says so, as a run interrupted later does.
            d = claimed[0] if claimed else None
            if d is not None and not (d / ERROR_FILE).exists() and not (d / SUMMARY_FILE).exists():
                term = isinstance(e, Terminated)
                try:
                    record_failure(d, [a for a in args if "=" in a and not a.startswith("-")],
                                   f"interrupted by {e.signal_name if term else 'Ctrl-C (SIGINT)'} before the run started",
                                   int(e.code) if term else 130, "config", error_type=type(e).__name__)
                except OSError:
                    pass
            for sweep in swept:   # jobs a launcher's workers were running: killed with the sweep
                term = isinstance(e, Terminated)
                n = record_interrupted_jobs(sweep, e.signal_name if term else "Ctrl-C (SIGINT)",
                                            int(e.code) if term else 130)
                if n:
                    print(f"error: {n} job(s) of the sweep in {sweep} were stopped while running (error.json in "
                          "each)", file=sys.stderr, flush=True)
            raise


def _refuse_unparsable(parser, overrides: Sequence[str], directory: str | None, leftovers: Sequence[str]) -> None:
    """An override Hydra's grammar rejects (`seed=0,`): one line naming it. Hydra's own message
    names only the token it expected, not which of the command line's settings it was reading.
    Returns when each override parses alone (the error was another)."""
    from hydra.errors import OverrideParseException

    for o in overrides:
        try:
            parser.parse_overrides([o])
        except OverrideParseException as e:
            why = one_line(re.split(r"\s*See https://", str(e))[0].split(" expecting ")[0], 300).rstrip(";. ")
            _fail_up_front(f"{o} is not a valid setting ({why}); write key=value, key=a,b for a sweep (with -m), "
                           "and quote a value with commas or spaces: key='a, b'", directory, overrides, e, leftovers)


def _prepare(args: list[str], config_dir: Path, job_name: str, held: ExitStack,
             claimed: list[Path] | None = None, swept: list[Path] | None = None) -> list[str]:
    from mosaic.cli.hydra_args import args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args = for_hydra(args)   # a mapping given whole (workload.experts={...}): mosaic/config/mappings.py
    try:
        ns = args_parser().parse_args(args)
    except SystemExit:   # argparse's own usage error: Hydra reports it
        return args
    # Hydra raises these as ValueError tracebacks (exit 1) once it has started.
    modes = [flag for flag, given in (("--run", ns.run), ("--multirun", ns.multirun), ("--cfg", ns.cfg is not None),
                                      ("--info", ns.info is not None), ("--shell-completion", ns.shell_completion))
             if given]
    if len(modes) > 1:
        _fail_up_front(f"{' and '.join(modes)} are two ways to run (`mosaic sweep` is --multirun): give one of "
                       "--run, --multirun, --cfg, --info, --shell-completion", None, list(ns.overrides or []))
    if ns.shell_completion and not any(o.split("=", 1)[0] in ("install", "uninstall", "query")
                                       for o in ns.overrides or []):
        _fail_up_front("--shell-completion needs what to do: install=bash (or zsh, fish), uninstall=bash or "
                       "query=bash", None, list(ns.overrides or []))
    if ns.help and not ns.hydra_help:
        _app_help(ns, config_dir, job_name)
    if ns.help or ns.hydra_help or ns.version or ns.info or ns.shell_completion or ns.experimental_rerun:
        return args
    config_name, overrides = ns.config_name or "config", list(ns.overrides or [])
    # An earlier run's Hydra files in a reused run directory: Hydra rewrites .hydra/ only if this
    # run gets that far, and appends to its job log.
    leftovers = (".hydra", f"{job_name}.log")
    explicit_run_dir = _override_value(overrides, "hydra.run.dir")
    if ns.multirun and explicit_run_dir is not None and _override_value(overrides, "hydra.sweep.dir") is None:
        # Hydra ignores it in a sweep: the sweep went to ./multirun/<date> instead
        _fail_up_front(f"hydra.run.dir={explicit_run_dir} sets a single run's folder, and a sweep (-m, `mosaic "
                       "sweep`) ignores it: set hydra.sweep.dir instead", None, overrides)
    explicit_run_dir = explicit_run_dir if explicit_run_dir and "${" not in explicit_run_dir else None
    configs = _config_dirs(ns, config_dir, overrides, None if ns.multirun else explicit_run_dir, leftovers)
    if configs is None:
        return args
    try:   # a sweep's too: `-m seed=0,1 seed=2` would otherwise run seed=2 alone
        check_overrides(overrides)
    except ConfigError as e:
        _fail_up_front(str(e), None if ns.multirun else explicit_run_dir, overrides, hydra_leftovers=leftovers)
    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(overrides)
        cfg = _compose(configs, job_name, config_name, [o.input_line for o in parsed if not o.is_sweep_override()])
    except _composition_errors() as e:
        _refuse_unparsable(parser, overrides, None if ns.multirun else explicit_run_dir, leftovers)
        why = run_message(e) if job_name == "run" else hydra_message(e)
        if ns.multirun:   # composed with the swept groups at their defaults: name a job it fails in
            job = _first_failing_job(parser, overrides, configs, job_name, config_name)
            why = f"sweep job {' '.join(job)}: {why}" if job else why
        _fail_up_front(why, None if ns.multirun else explicit_run_dir, overrides, e, leftovers)
    multirun = ns.multirun or str(cfg.hydra.mode) in ("RunMode.MULTIRUN", "MULTIRUN")
    sweeps = [o.input_line for o in parsed if o.is_sweep_override()]
    if not multirun and sweeps:
        key, _, value = sweeps[0].partition("=")
        said = f"{sweeps[0]} gives several values: add -m (--multirun) to run one job per value"
        if "/" in value or key.rstrip("_").endswith(("dir", "path", "profiles", "file")):   # a path with a comma
            said += f"; or, if the comma is part of a path, quote the value (in the shell: '{key}=\"{value}\"')"
        _fail_up_front(said, explicit_run_dir, overrides, hydra_leftovers=leftovers)
    sweep_only = [o for o in overrides if o.lstrip("+~").startswith(("hydra/launcher", "hydra.launcher.",
                                                                       "hydra/sweeper", "hydra.sweeper."))]
    if not multirun and sweep_only:
        # Hydra reads its launcher and sweeper only in a sweep: a single run would ignore them
        _fail_up_front(f"{sweep_only[0]} sets how a sweep runs its jobs, and a single run has no sweep: add -m "
                       "(--multirun, or `mosaic sweep`) to sweep, or leave it out", explicit_run_dir, overrides,
                       hydra_leftovers=leftovers)
    launcher = cfg.hydra.get("launcher") or {}
    if multirun and "joblib" in str(launcher.get("_target_", "")) and launcher.get("n_jobs") == 0:
        # joblib's own error is a traceback once the sweep has started
        _fail_up_front("hydra.launcher.n_jobs=0 runs no job: give the number of jobs at once (>= 1, or -1 for "
                       "one per core)", None, overrides)
    if multirun and cfg.hydra.sweeper.get("_target_") == BASIC_SWEEPER:
        _check_sweep(cfg, parser, parsed, configs, job_name, config_name)
    if ns.cfg == "job" and not multirun and given_whole(overrides):
        # Hydra would print the mapping as it merged it; the run uses it as given
        print(OmegaConf.to_yaml(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=ns.resolve),
              end="", flush=True)
        raise SystemExit(0)
    if ns.cfg or ns.resolve:   # prints the config; runs nothing
        return args
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    directory = _dir_of(cfg, key)
    if directory is None:
        return args
    if not directory.strip():
        print(f"error: {key} is empty: give a directory (an empty one would write into the working directory)",
              file=sys.stderr, flush=True)
        raise SystemExit(2)
    pin, given = [], _override_value(overrides, key)
    if given is not None and "${" in given:
        return args   # Hydra resolves it again (a later ${now:...}): run_job claims what it gets
    if given is None:
        if not _PLAIN_PATH.match(directory):
            return args   # not pinnable: Hydra may resolve its own; run_job claims that one
        pin = [f"{key}='{directory}'"]
    if multirun:
        earlier = run_folders(Path(directory))
        if earlier and any((Path(directory) / f).is_file() for f in (SUMMARY_FILE, ERROR_FILE)):
            print(f"error: sweep directory {directory} is a single run's folder (its summary.json or error.json); "
                  "choose a new hydra.sweep.dir for the sweep", file=sys.stderr, flush=True)
            raise SystemExit(2)
        if earlier:
            print(f"error: sweep directory {directory} holds {earlier} run(s) of an earlier sweep; choose a new "
                  "hydra.sweep.dir or remove them (a sweep's folder holds one sweep: `mosaic runs` tables every run "
                  "in it)", file=sys.stderr, flush=True)
            raise SystemExit(2)
        owner = held_elsewhere(Path(directory), LOCK_FILE)
        if owner is not None:   # its outputs and the sweep's would be listed as one sweep
            print(f"error: sweep directory {directory} is in use by a single run{owner}; choose a new "
                  "hydra.sweep.dir, or wait for that run to end", file=sys.stderr, flush=True)
            raise SystemExit(2)
    else:
        owner = held_elsewhere(Path(directory), SWEEP_LOCK_FILE)
        if owner is not None:
            print(f"error: run directory {directory} is in use by a sweep{owner}, whose jobs write there; "
                  "choose a new hydra.run.dir, or wait for the sweep to end", file=sys.stderr, flush=True)
            raise SystemExit(2)
        inside = run_folders(Path(directory), below=True)
        if inside:   # a sweep's folder: this run's outputs would sit among its jobs and be tabled with them
            print(f"error: run directory {directory} holds {inside} run(s) in its subfolders (a sweep's folder); "
                  "choose a new hydra.run.dir or remove them", file=sys.stderr, flush=True)
            raise SystemExit(2)
    try:
        if multirun:   # its own lock file: a job's directory may be the sweep's
            held.enter_context(claim_run_dir(Path(directory), "sweep directory", lock=SWEEP_LOCK_FILE, clear=False))
            if swept is not None:
                swept.append(Path(directory))
        else:
            held.enter_context(claim_run_dir(Path(directory), also=leftovers))
            if claimed is not None:
                claimed.append(Path(directory))
    except RunDirError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    return args + pin


def _app_help(ns, config_dir: Path, job_name: str) -> None:
    """Print the app's help and exit 0 (mosaic/cli/help.py: Hydra's takes seconds for the same
    text). Returns where Hydra has to answer: a template using Hydra's other variables, a search
    path this check cannot follow, or a config Hydra would refuse (it then says why)."""
    from mosaic.cli.help import render

    overrides = list(ns.overrides or [])
    configs = _config_dirs(ns, config_dir, overrides, None, ())
    if configs is None:
        return
    try:
        cfg = _compose(configs, job_name, ns.config_name or "config", overrides)
        if list(cfg.hydra.searchpath or []) != ([f"file://{configs[1]}"] if configs[1] else []):
            return   # a config or override that adds to the search path: Hydra lists what is there
        text = render(cfg, [d for d in configs if d is not None], resolve=bool(ns.resolve))
    except _composition_errors():
        return
    if text is not None:
        print(text)
        sys.exit(0)


def _config_dirs(ns, config_dir: Path, overrides: Sequence[str], run_dir: str | None,
                 leftovers: Sequence[str]) -> tuple[Path, Path | None] | None:
    """The primary config directory (--config-path, absolute or, as Hydra's docs say, relative to
    the app's module; else `config_dir`) and the one --config-dir adds. A missing one is refused
    on one line, exit 2. None where this check cannot follow Hydra (a pkg:// path, a command line
    that sets hydra.searchpath itself): Hydra then reports its way."""
    primary, extra = Path(config_dir), None
    if ns.config_path:
        given = str(ns.config_path)
        if given.startswith("pkg://"):
            return None
        path = Path(given.removeprefix("file://"))
        primary = path if path.is_absolute() else Path(__file__).resolve().parent / path
        if not primary.is_dir():
            _fail_up_front(f"--config-path {given}: no such directory ({primary}); give the folder that holds "
                           f"the primary config, or leave --config-path out", run_dir, overrides, hydra_leftovers=leftovers)
    if ns.config_dir:
        extra = Path(ns.config_dir).resolve()
        if not extra.is_dir():
            _fail_up_front(f"--config-dir {ns.config_dir}: no such directory; give a folder of config groups to "
                           "add to the search path", run_dir, overrides, hydra_leftovers=leftovers)
        if "'" in str(extra) or "\\" in str(extra) or any(o.lstrip("+~").startswith("hydra.searchpath")
                                                            for o in overrides):
            return None
    return primary, extra


def _override_dirname(job_cfg: DictConfig, job: Sequence[str]) -> str:
    """The folder Hydra names after a job's overrides (its default subdir), which it resolves only
    when the job starts."""
    od = job_cfg.hydra.job.config.override_dirname
    excluded = set(od.exclude_keys or [])
    return str(od.item_sep).join(sorted(o for o in job if o.split("=", 1)[0].lstrip("+~") not in excluded))


def _glob_options(config_dir: Path, job_name: str, override) -> list[str]:
    """The options of the override's config group its glob(...) selects."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3", job_name=job_name):
        options = GlobalHydra.instance().config_loader().get_group_options(override.get_key_element())
    return override.value().filter(options)


def build_once(c, built: dict[str, ConfigError | None]) -> None:
    """Build a sweep job's run as the job will (mosaic.run.builder.build_run: profiles, workload,
    backend, the requests the engine must serve), so what the built run refuses (a model that fits
    no worker at cluster.memory_gib, workload.k above the experts a source has, a Hub model this
    machine cannot get) stops the sweep before its first job instead of failing in its own. Jobs
    that differ only in their seed build once (~0.3 s a build): the seed draws the workload, but the
    refusals above do not depend on it; a seed's own oversize request still fails in its job. Only
    ConfigError is the sweep's to report: anything else is the job's, recorded in its error.json."""
    import dataclasses
    import json
    import logging
    import warnings

    from mosaic.run.builder import build_run

    key = json.dumps({k: v for k, v in dataclasses.asdict(c).items() if k != "seed"}, sort_keys=True, default=str)
    if key in built:
        if built[key] is not None:
            raise built[key]
        return
    built[key] = None
    # Quiet: the job logs its build's warnings (data quality, ...) itself, where they belong.
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            build_run(c)
    except ConfigError as e:
        built[key] = e
        raise
    except Exception:   # noqa: BLE001 -- the job will meet it again and record it with its traceback
        pass
    finally:
        logging.disable(logging.NOTSET)


def _first_failing_job(parser, overrides: Sequence[str], configs: tuple[Path, Path | None], job_name: str,
                       config_name: str) -> list[str] | None:
    """The first job of a sweep whose config does not compose (None: none, or the sweep itself
    does not expand)."""
    from mosaic.cli.hydra_args import expand_sweep

    try:
        parsed = parser.parse_overrides(list(overrides))
        if not any(o.is_sweep_override() for o in parsed):
            return None
        jobs = expand_sweep([o for o in parsed if not o.is_hydra_override()])
    except _composition_errors():
        return None
    hydra_ovr = [o.input_line for o in parsed if o.is_hydra_override()]
    for job in jobs:
        try:
            _compose(configs, job_name, config_name, hydra_ovr + list(job))
        except _composition_errors():
            return job
    return None


def _check_sweep(cfg: DictConfig, parser, parsed, configs: tuple[Path, Path | None], job_name: str,
                 config_name: str) -> None:
    """Compose every job of a basic sweep (sweeper.params, then the command line's overrides) as
    Hydra's launcher will; exit 2 on one line for the first that fails, or two that share a
    directory."""
    from mosaic.cli.hydra_args import expand_sweep

    from hydra.core.override_parser.types import ValueType

    globs = [o for o in parsed if o.value_type == ValueType.GLOB_CHOICE_SWEEP]
    if globs:   # glob(...) expands over the config groups' options: Hydra's to expand and check,
        # but a glob that matches nothing launches no job and exits 0.
        empty = [o.input_line for o in globs if configs[1] is None and not _glob_options(configs[0], job_name, o)]
        if empty:
            _fail_up_front(f"{' '.join(empty)} matches no option of its config group, so the sweep has no job: "
                           "give a pattern that matches one (e.g. scheduler=glob(*) runs every scheduler)", None,
                           [o.input_line for o in parsed])
        return
    hydra_ovr = [o.input_line for o in parsed if o.is_hydra_override()]
    task = [o for o in parsed if not o.is_hydra_override()]
    given = cfg.hydra.sweeper.get("params")
    params = [f"{k}={v}" for k, v in (OmegaConf.to_container(given) if given is not None else {}).items()]
    try:
        jobs = expand_sweep(parser.parse_overrides(params) + task)
    except _composition_errors() as e:
        _fail_up_front(hydra_message(e), None, [o.input_line for o in parsed], e)
    if not jobs:
        empty = [o.input_line for o in parsed if o.is_sweep_override() and not expand_sweep([o])]
        _fail_up_front(f"{' '.join(empty) or 'the sweep'} gives no value, so the sweep has no job: give at "
                       "least one value (e.g. range(0,3) runs 0, 1 and 2)", None, [o.input_line for o in parsed])
    seen: dict[tuple[str, ...], int] = {}
    for job in jobs:
        key = tuple(sorted(job))
        if key in seen:
            msg = (f"sweep job {' '.join(job) or '(no overrides)'} comes twice (a value repeated in a sweep); "
                   "give each value once (nothing was run)")
            print(f"error: {one_line(msg, 2000)}", file=sys.stderr, flush=True)
            raise SystemExit(2)
        seen[key] = 1
    from mosaic.run.builder import typed

    bad, dirs, built = [], {}, {}
    for job in jobs:
        try:
            job_cfg = _compose(configs, job_name, config_name, hydra_ovr + list(job))
            if job_name == "run":
                # The settings as the job will check them first (unknown keys, values out of
                # range): a setting every job shares would otherwise fail each job in turn.
                build_once(typed(job_cfg), built)
        except (*_composition_errors(), ConfigError) as e:
            bad.append((job, e))
            continue
        sub = _dir_of(job_cfg, "hydra.sweep.subdir")
        if sub is not None:
            dirs.setdefault(os.path.normpath(sub), []).append(job)
        elif "hydra.job.override_dirname" in str(OmegaConf.to_container(job_cfg.hydra.sweep, resolve=False)
                                                 .get("subdir") or ""):
            sub = _override_dirname(job_cfg, job)
        long = [part for part in Path(sub or "").parts if len(part.encode()) > 255]
        if long:
            _fail_up_front(f"sweep job {' '.join(job)}: its folder name {long[0][:40]}... is longer than a file "
                           "name may be (255 bytes); set hydra.sweep.subdir to a shorter name (nothing was run)",
                           None, job)
    if bad:
        job, e = bad[0]
        more = f" ({len(bad)} of {len(jobs)} jobs fail; nothing was run)" if len(bad) > 1 else " (nothing was run)"
        why = run_message(e) if job_name == "run" else hydra_message(e)
        _fail_up_front(f"sweep job {' '.join(job) or '(no overrides)'}: {why}{more}", None, job, e)
    for sub, same in dirs.items():
        if len(same) > 1:
            msg = (f"sweep jobs {' '.join(same[0])} and {' '.join(same[1])} would both write into "
                   f"<sweep dir>/{sub}; add the setting that tells them apart to hydra.sweep.subdir")
            print(f"error: {one_line(msg, 2000)}", file=sys.stderr, flush=True)
            raise SystemExit(2)
