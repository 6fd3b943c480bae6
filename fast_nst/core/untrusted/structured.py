"""Structured text from outside: YAML configs and ``--set`` values, JSON metadata and indexes.

Every parser here bounds its input before the work: bytes (checked before parsing), nesting
depth (checked while composing YAML, and by a bracket scan before :func:`json.loads`, so no
input reaches the parsers' recursion limits), and for YAML the size of the document with its
aliases expanded (a few hundred bytes of anchors can name 10**9 nodes; whoever walks or prints
the result would expand them). YAML mappings with a key given twice are refused, naming the key
and both lines: PyYAML silently keeps the last one. Each function returns a value or raises one
:class:`~fast_nst.core.errors.FastNSTError` (the caller picks the subclass) whose message is
bounded and printable.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Optional

import yaml
from yaml.composer import Composer
from yaml.nodes import MappingNode, Node, SequenceNode

from ..errors import ConfigError, DataError, FastNSTError
from .paths import input_file, read_at_most
from .text import shown

__all__ = ["MAX_DEPTH", "MAX_JSON_BYTES", "MAX_PLAIN_CHARS", "MAX_YAML_BYTES", "MAX_YAML_NODES",
           "UnparsableYAML", "check_plain_data", "json_depth", "load_json", "load_yaml", "read_json_file",
           "read_text_file"]

# A config file of fast-nst is a flat mapping with lists and one nested mapping (model_args):
# depth 3. The largest in conf/ is under 2 kB. 1 MiB and depth 32 leave room for any config a
# person writes; what is refused beyond is damage or an attack.
MAX_YAML_BYTES = 1 << 20
MAX_DEPTH = 32
# Nodes of a YAML document with every alias expanded: a config has tens; 100,000 bounds what a
# consumer that walks, copies or prints the value can be made to do.
MAX_YAML_NODES = 100_000
# JSON fast-nst reads (cache indexes of tens of thousands of files, metadata): 64 MiB is far
# above the largest (an index of 1M files is ~60 MB), callers pass tighter limits where they can.
MAX_JSON_BYTES = 64 << 20
# Characters of all strings in unpickled data (a checkpoint's config and entries besides its
# weights), each shared reference counted again: fast-nst writes a few kB; what is refused beyond
# would make str() or json.dumps of the data build that much text.
MAX_PLAIN_CHARS = 4 << 20
# The widest int in such data: a seed or a step count fits in 64 bits; str() of a wider one is
# quadratic, and over 4300 digits it raises.
_MAX_INT_BITS = 1024
_PLAIN_SCALARS = (str, int, float, bool, type(None))  # what json.dumps writes
# Strings (with their escapes) and the brackets a depth scan counts.
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")
# What a YAML bracket scan leaves out: quoted strings and comments.
_YAML_QUOTED_OR_COMMENT = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"\\]|\\.)*\"|(?:^|(?<=\s))#[^\n]*", re.MULTILINE)


class UnparsableYAML(ConfigError):
    """Text that is not YAML at all (a syntax error), as opposed to YAML over a bound: ``--set``
    reads such text as a plain string."""


def _bounded_loader(where: str, error: type[FastNSTError]) -> type:
    """A SafeLoader class that counts depth and expanded nodes while composing and refuses
    duplicate keys while constructing."""

    class Loader(yaml.SafeLoader):
        def __init__(self, stream: str):
            super().__init__(stream)
            self._depth = 0

        def compose_node(self, parent: Optional[Node], index: Any) -> Node:
            self._depth += 1
            try:
                if self._depth > MAX_DEPTH:
                    mark = self.peek_event().start_mark
                    raise error(f"{where}: nested more than {MAX_DEPTH} levels deep (line {mark.line + 1}); "
                                "a config is a mapping of keys to values, lists and one level of mappings.")
                return Composer.compose_node(self, parent, index)
            finally:
                self._depth -= 1

        def construct_object(self, node: Node, deep: bool = False) -> Any:
            try:
                return super().construct_object(node, deep=deep)
            except ValueError as e:
                # Plain scalars YAML 1.1 reads as ints or dates that are none: 2020-02-30, an int
                # of over 4300 digits (Python's int() refuses those).
                line = node.start_mark.line + 1
                if "integer string conversion" in str(e):
                    raise error(f"{where}: line {line} holds an integer of more than 4,300 digits; no setting "
                                "takes one.") from None
                raise error(f"{where}: {shown(str(node.value), 40)!r} (line {line}) reads as a number or a "
                            f"date but is none ({shown(str(e), 80)}); quote it to give text.") from None

        def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict:
            # before SafeConstructor merges '<<' keys, whose overrides are not duplicates
            _refuse_duplicates(node, where, error)
            return super().construct_mapping(node, deep=deep)

    return Loader


def _refuse_duplicates(node: MappingNode, where: str, error: type[FastNSTError]) -> None:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = (key_node.tag, key_node.value)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise error(f"{where}: key '{shown(key_node.value, 60)}' is given twice (lines {seen[key]} and "
                        f"{line}); YAML would silently keep the second. Remove one.")
        seen[key] = line


def _expanded_size(root: Node, where: str, error: type[FastNSTError]) -> int:
    """Nodes in ``root`` with its aliases expanded (aliases are shared node objects), counted
    once per node object and capped at :data:`MAX_YAML_NODES`."""
    sizes: dict[int, int] = {}
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:  # post-order, iterative: depth is bounded, but no recursion needed either
        node, done = stack.pop()
        if id(node) in sizes:
            continue
        children = ([n for pair in node.value for n in pair] if isinstance(node, MappingNode)
                    else list(node.value) if isinstance(node, SequenceNode) else [])
        if not done:
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
            continue
        sizes[id(node)] = 1 + sum(sizes.get(id(c), 0) for c in children)
        if sizes[id(node)] > MAX_YAML_NODES:
            raise error(f"{where}: its anchors and aliases expand to more than {MAX_YAML_NODES:,} values; "
                        "a config needs tens. Write the values out instead of nesting aliases.")
    return sizes[id(root)]


def load_yaml(text: str, where: str, error: type[FastNSTError] = ConfigError,
              max_bytes: int = MAX_YAML_BYTES) -> Any:
    """The value of YAML document ``text`` (from ``where``, named in messages), safe types only.

    ``error`` (a :class:`FastNSTError` subclass) for text over ``max_bytes`` (UTF-8), nesting over
    :data:`MAX_DEPTH`, aliases expanding to over :data:`MAX_YAML_NODES` nodes or a mapping key
    given twice or a number or date that cannot be one (2020-02-30, an int of 5000 digits);
    :class:`UnparsableYAML` for text that is not YAML."""
    if len(text) > max_bytes or len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise error(f"{where}: {len(text.encode('utf-8', 'surrogatepass')):,} bytes; YAML read by fast-nst "
                    f"is at most {max_bytes:,} bytes.")
    # PyYAML's scanner reads ~1000 tokens ahead with quadratic bookkeeping of flow brackets
    # (about a second for "[" * 1000), before the composer sees the depth: scan brackets first.
    if _bracket_depth(_YAML_QUOTED_OR_COMMENT.sub("", text)) > MAX_DEPTH:
        raise error(f"{where}: nested more than {MAX_DEPTH} levels deep (brackets); a config is a mapping of "
                    "keys to values, lists and one level of mappings.")
    loader = _bounded_loader(where, error)(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, where, error)
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        detail = " ".join(str(e).replace('in "<unicode string>", ', "").split())
        tabs = " (YAML indents and separates with spaces, not tabs)" if "'\\t'" in detail else ""
        raise UnparsableYAML(f"{where}: not valid YAML: {shown(detail, 300)}{tabs}") from None
    except RecursionError:  # not reachable with MAX_DEPTH; kept so the promise holds regardless
        raise error(f"{where}: nested too deep.") from None
    finally:
        loader.dispose()


def _bracket_depth(text: str) -> int:
    depth = deepest = 0
    for m in _BRACKETS.finditer(text):
        depth += 1 if m.group() in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def json_depth(text: str) -> int:
    """The deepest nesting of ``[`` and ``{`` in JSON ``text``, brackets in strings not counted;
    linear time, no recursion (so it can be asked before :func:`json.loads`, which recurses)."""
    return _bracket_depth(_JSON_STRING.sub("", text))


def load_json(text: str | bytes, where: str, error: type[FastNSTError],
              max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """The value of JSON ``text`` (from ``where``); ``error`` for more than ``max_bytes``, nesting
    deeper than ``max_depth``, invalid UTF-8 or invalid JSON (numbers of over 4300 digits too)."""
    size = len(text) if isinstance(text, bytes) else len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise error(f"{where}: {size:,} bytes of JSON, more than the {max_bytes:,} fast-nst reads here.")
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{where}: not UTF-8 text, so not JSON.") from None
    depth = json_depth(text)
    if depth > max_depth:
        raise error(f"{where}: JSON nested {depth} levels deep; at most {max_depth} are read here.")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError; so is a huge int
        raise error(f"{where}: not valid JSON ({shown(str(e), 120)}).") from None


def read_text_file(path: Path, what: str, error: type[FastNSTError], max_bytes: int) -> str:
    """The UTF-8 text of regular file ``path`` (``what`` it is, for messages), at most
    ``max_bytes`` bytes; ``error`` for a missing, unreadable, oversized or non-regular file (a
    FIFO would block the read, a device never end) or text that is not UTF-8."""
    try:
        input_file(path, what, max_bytes)  # its kind (no FIFO, device or socket) and size, by stat
        with open(path, "rb") as f:
            data = read_at_most(f, max_bytes + 1)  # the file may have grown since the stat
    except DataError as e:
        raise error(str(e)) from None
    except OSError as e:
        raise error(f"{path}: cannot read {what}: {e.strerror or type(e).__name__}.") from None
    if len(data) > max_bytes:
        raise error(f"{path}: {what} is over {max_bytes:,} bytes; at most {max_bytes:,} are read.")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{path}: {what} is not UTF-8 text (byte {e.start}).") from None


def read_json_file(path: Path, what: str, error: type[FastNSTError], max_bytes: int = MAX_JSON_BYTES,
                   max_depth: int = MAX_DEPTH) -> Any:
    """:func:`load_json` of the file ``path`` read with :func:`read_text_file`."""
    return load_json(read_text_file(path, what, error, max_bytes), str(path), error, max_bytes, max_depth)


def _plain_problem(value: Any, depth: int, max_depth: int) -> Optional[str]:
    """Why ``value`` (one node, its children not looked at) is not plain data, or None."""
    if depth > max_depth:
        return f"nested more than {max_depth} levels deep"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > _MAX_INT_BITS:
        return f"an integer of {value.bit_length():,} bits"
    if isinstance(value, dict):
        bad = next((k for k in value if not isinstance(k, _PLAIN_SCALARS)), None)
        return None if bad is None else f"a mapping with a key of type {type(bad).__name__}"
    if not isinstance(value, (*_PLAIN_SCALARS, list, tuple)):
        return f"a value of type {type(value).__name__}"
    return None


def check_plain_data(value: Any, where: str, error: type[FastNSTError], max_nodes: int = MAX_YAML_NODES,
                     max_depth: int = MAX_DEPTH, max_chars: int = MAX_PLAIN_CHARS) -> None:
    """``error`` unless ``value`` (unpickled from outside: a checkpoint's config) is plain data
    that str(), repr() and json.dumps turn into bounded text in bounded time: strings,
    numbers, bools, None, and lists, tuples and dicts of them, at most ``max_nodes`` values and
    ``max_chars`` characters of strings counting each shared reference every time it is reached
    (a pickle of 46 kB can nest lists 9 deep and 10 wide through shared references: 10**9
    leaves), at most ``max_depth`` levels deep. A walk without recursion, stopped at the bounds."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    nodes, chars = 1, 0
    while stack:
        item, depth = stack.pop()
        children = item.items() if isinstance(item, dict) else item if isinstance(item, (list, tuple)) else ()
        nodes += len(children) * (2 if isinstance(item, dict) else 1)  # counted before they are stacked
        if nodes > max_nodes:
            raise error(f"{where}: more than {max_nodes:,} values (shared references counted each time); "
                        "the file is damaged.")
        problem = _plain_problem(item, depth, max_depth)
        if problem is not None:
            raise error(f"{where}: {problem}, where fast-nst writes plain data; the file is damaged.")
        if isinstance(item, str):
            chars += len(item)
            if chars > max_chars:
                raise error(f"{where}: more than {max_chars:,} characters of text (shared references "
                            "counted each time); the file is damaged.")
        elif isinstance(item, dict):
            stack.extend((v, depth + 1) for pair in children for v in pair)
        else:
            stack.extend((v, depth + 1) for v in children)
