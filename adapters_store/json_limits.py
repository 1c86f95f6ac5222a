"""JSON from clients, parsed with a bound on nesting depth.

`json.loads` recurses once per level: a few kilobytes of `[[[[...` raise
RecursionError (a 500 where it is not caught), and a document nested a few
hundred levels deep parses but can overflow whatever recurses over it later
(pydantic, json.dumps, a response model). Every JSON a request brings (form
fields, the safetensors header and its metadata) goes through `loads_bounded`.

Cost: one C parse plus, only when the text has more brackets than the bound,
an iterative walk over the parsed containers (never recursion).
"""

from __future__ import annotations

import json

MAX_JSON_DEPTH = 32  # a head header is 3 deep; metadata `extra` gets room to spare


class JsonTooDeep(ValueError):
    """The document nests arrays/objects deeper than allowed."""


def loads_bounded(text: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> object:
    """json.loads, refusing documents nested deeper than `max_depth` levels.

    Raises json.JSONDecodeError (malformed, or an integer too long for Python to parse),
    UnicodeDecodeError (bytes not UTF-8) or JsonTooDeep.
    """
    opening = (b"[", b"{") if isinstance(text, bytes) else ("[", "{")
    try:
        value = json.loads(text)
    except RecursionError:
        raise JsonTooDeep(f"JSON nested deeper than {max_depth} levels") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise
    except ValueError as exc:  # an integer past Python's digit limit (4,300)
        raise json.JSONDecodeError(f"number too long: {exc}", "", 0) from None
    if text.count(opening[0]) + text.count(opening[1]) <= max_depth:
        return value  # cannot nest deeper than its bracket count
    if json_depth(value) > max_depth:
        raise JsonTooDeep(f"JSON nested deeper than {max_depth} levels")
    return value


def json_depth(value: object) -> int:
    """Nesting depth of parsed JSON: a scalar is 0, [] or {} is 1, [[1]] is 2."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((child, depth + 1) for child in children)
    return deepest
