"""`mosaic run --help`: the app's help text (mosaic/conf/hydra/help/mosaic.yaml), rendered as
Hydra renders it, in a third of Hydra's time.

Hydra's own help lists every config group's options through its config loader, which deep-copies
the whole config repository for each group and option kind (~85 copies here, 0.5-2 s depending on
the host) and does so even for template variables the template does not use. The options here are
the .yaml files of the config directories the command line searches, which is what Hydra lists for
this app: no structured config is registered into a group (tests/cli/test_help.py compares the two).
Templates that use Hydra's other variables ($FLAGS_HELP, $HYDRA_CONFIG_GROUPS) go to Hydra. Unlike
Hydra's, each setting of the config carries its description from the schema as a YAML comment.
"""
from __future__ import annotations

import string
from collections import defaultdict
from pathlib import Path
from typing import Iterable

from omegaconf import DictConfig, OmegaConf

from mosaic.config.descriptions import annotate_yaml

RENDERED = {"APP_CONFIG_GROUPS", "CONFIG"}


def config_groups(dirs: Iterable[Path]) -> dict[str, list[str]]:
    """Each config group (a folder, nested ones as a/b) of the app's config directories with its
    options (the .yaml files in it), Hydra's own groups (hydra/...) left out."""
    groups: dict[str, set[str]] = defaultdict(set)
    for d in dirs:
        for f in d.rglob("*"):
            rel = f.relative_to(d)
            if f.suffix not in (".yaml", ".yml") or len(rel.parts) < 2 or rel.parts[0] == "hydra":
                continue
            groups["/".join(rel.parts[:-1])].add(f.stem)
    return {g: sorted(groups[g]) for g in sorted(groups)}


def format_groups(groups: dict[str, list[str]]) -> str:
    """As Hydra's compact listing: a line `group: a, b, c` per group."""
    return "".join(f"{g}: {', '.join(options)}\n" for g, options in groups.items())


def render(cfg: DictConfig, dirs: Iterable[Path], resolve: bool = False) -> str | None:
    """The help text of `cfg` (a composed config with its hydra node), or None when its template
    uses a variable only Hydra fills."""
    template = string.Template(cfg.hydra.help.template)
    used = {m.group("named") or m.group("braced") for m in template.pattern.finditer(template.template)} - {None}
    if not used <= RENDERED:
        return None
    job = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    return template.substitute(APP_CONFIG_GROUPS=format_groups(config_groups(dirs)),
                               CONFIG=annotate_yaml(OmegaConf.to_yaml(job, resolve=resolve)))
