"""YAML for input files, read strictly: a repeated key is an error, not a silent overwrite, a
plain number in exponent form (`1e300`, `5E-3`) is a number, not a string, and `064` or `1:30` are
not the numbers 52 and 90 (YAML 1.1's base 8 and base 60).

PyYAML implements YAML 1.1, whose float pattern needs a dot and a signed exponent, so `1e300` and
`1.5e3` come back as the strings '1e300' and '1.5e3' (YAML 1.2's core schema reads both as floats);
and a mapping that lists a key twice keeps the last value without a word (a profile whose model key
appeared twice silently lost the first model's numbers). Every error is one line naming the file and
where in it (line, column, and the keys leading to a duplicate).
"""
from __future__ import annotations

import re
from typing import Any

import yaml

from mosaic.core.errors import ConfigError

_MERGE = "tag:yaml.org,2002:merge"


class StrictLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2's numbers (exponent floats; no base 8, 60, 2 or 16 ints); duplicate
    keys are found by load_yaml."""


_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
# YAML 1.1's numbers that read as another number than they show: a leading 0 is base 8 (`064` is
# 52), a colon base 60 (`1:30` is 90), and 0b/0x bases. YAML 1.2's core schema has none of them:
# here such a scalar stays text, which the file's schema refuses naming the field.
StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
StrictLoader.add_implicit_resolver(_INT, re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$"), list("-+0123456789"))
StrictLoader.add_implicit_resolver(
    _FLOAT,
    re.compile(r"""^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
                |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
                |[-+]?\.(?:inf|Inf|INF)
                |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def _where_in(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "an unknown place"


def _yaml_error(e: yaml.YAMLError) -> str:
    if isinstance(e, yaml.MarkedYAMLError):
        what = " ".join(str(p) for p in (e.context, e.problem) if p)
        return f"{what or 'malformed YAML'} at {_where_in(e.problem_mark or e.context_mark)}"
    return str(e)


def _check_duplicates(loader: StrictLoader, root: yaml.Node, where: str) -> None:
    """Every mapping in the document lists each key once (merge keys `<<` excepted: what they bring
    in may be overridden, as YAML intends)."""
    stack: list[tuple[yaml.Node, tuple[str, ...]]] = [(root, ())]
    seen_nodes: set[int] = set()
    while stack:
        node, path = stack.pop()
        if id(node) in seen_nodes:      # an alias of a node already checked
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend((child, (*path, str(i))) for i, child in enumerate(node.value))
        elif isinstance(node, yaml.MappingNode):
            first: dict[Any, yaml.Node] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE:
                    stack.append((value_node, path))
                    continue
                if isinstance(key_node, yaml.ScalarNode):
                    key = loader.construct_object(key_node, deep=True)
                    if key in first:
                        inside = f"mapping '{'.'.join(path)}'" if path else "the top-level mapping"
                        raise ConfigError(
                            f"{where}: duplicate key '{key}' in {inside} at line {key_node.start_mark.line + 1} "
                            f"(first at line {first[key].start_mark.line + 1}); YAML would keep only the last "
                            "one, so remove or rename one of them")
                    first[key] = key_node
                    stack.append((value_node, (*path, str(key))))
                else:
                    stack.append((value_node, path))


def load_yaml(text: str, where: str) -> Any:
    """The document in `text` (None for an empty one); a ConfigError naming `where` otherwise."""
    loader = StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_duplicates(loader, node, where)
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        raise ConfigError(" ".join(f"{where}: not valid YAML: {_yaml_error(e)}".split())) from None
    except RecursionError:
        raise ConfigError(f"{where}: not valid YAML: nested too deeply") from None
    finally:
        loader.dispose()
