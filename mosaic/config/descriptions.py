"""Each setting's description, read from the schema's own comments (mosaic/config/schema.py), so a
setting is described where it is declared and nowhere else: the comment on its line, else the
comment block right above it, else (workload numbers) what its range check calls it.

`mosaic run --help` shows them beside the config (mosaic/cli/help.py); a test keeps every field
described.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import io
import re
import textwrap
import tokenize

_FIELD = re.compile(r"^(\s*)([A-Za-z_]\w*)\s*:")


def _comments(cls: type) -> dict[str, str]:
    """Field name -> its comment, for the fields declared in `cls`'s own body."""
    lines = inspect.getsource(cls).splitlines(keepends=True)
    inline: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO("".join(lines)).readline):
        if tok.type == tokenize.COMMENT:
            inline[tok.start[0]] = tok.string.lstrip("#").strip()
    names = {f.name for f in dataclasses.fields(cls)}
    out: dict[str, str] = {}
    body_indent = None
    for no, line in enumerate(lines, start=1):
        m = _FIELD.match(line)
        if not m or m.group(2) not in names:
            continue
        body_indent = body_indent if body_indent is not None else m.group(1)
        if m.group(1) != body_indent:
            continue
        text = inline.get(no)
        if not text:   # the comment block right above, if any
            block, above = [], no - 1
            while above >= 1 and lines[above - 1].strip().startswith("#"):
                block.insert(0, inline.get(above, ""))
                above -= 1
            text = " ".join(block)
        if text:
            out[m.group(2)] = " ".join(text.split())
    return out


@functools.cache
def field_descriptions() -> dict[str, str]:
    """Dotted setting path (`scheduler.max_models_per_worker`) -> description, for every schema
    field that has one."""
    from mosaic.config import schema

    ranges = {f"workload.{k}": what for k, (_lo, _hi, what) in schema._WORKLOAD_RANGES.items()}
    comments = functools.cache(_comments)   # each section's source read once
    described = ((path, comments(cls).get(name) or ranges.get(path)) for path, cls, name, _ in schema.settings())
    return {path: text for path, text in described if text}


def all_fields() -> list[str]:
    """Every setting's dotted path in the schema."""
    from mosaic.config import schema

    return [path for path, *_ in schema.settings()]


def annotate_yaml(text: str, descriptions: dict[str, str] | None = None, width: int = 100) -> str:
    """A config's YAML (as OmegaConf writes it: two-space indents) with each known setting's
    description as a comment: at the end of its line where the line stays within `width`, else
    wrapped above it. Entries under a free-form mapping (`models.models`, `backend.options`) are
    left as they are."""
    descriptions = field_descriptions() if descriptions is None else descriptions
    out, stack = [], []   # stack: (indent, key) of the mappings the line is inside
    for line in text.splitlines():
        m = re.match(r"^( *)([^\s:#-][^:]*):(?:\s|$)", line)
        if not m:
            out.append(line)
            continue
        indent = len(m.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m.group(2)))
        about = descriptions.get(".".join(k for _, k in stack))
        if about and len(line) + len(about) + 4 > width:
            out.extend(textwrap.wrap(about, width, initial_indent=f"{m.group(1)}# ",
                                     subsequent_indent=f"{m.group(1)}# "))
            out.append(line)
        else:
            out.append(f"{line}  # {about}" if about else line)
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")
