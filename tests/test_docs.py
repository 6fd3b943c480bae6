"""The user docs against the code: every config key (with its default) and every command option is
documented, every option the docs use exists, the Python examples import what exists, and every
link between the docs leads somewhere. In-process and fast (no command is run)."""
import argparse
import ast
import dataclasses
import importlib
import re
import types
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

from fast_nst import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMANDS = ("app", "convert", "data", "download", "eval", "evaluate", "export", "optimize",
            "stylize_dataset", "train")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _prose(text: str) -> str:
    """``text`` without its fenced code blocks (their '#' lines are comments, not headings)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def anchors(text: str) -> set[str]:
    """GitHub's anchors for the headings of a markdown ``text``: lower case, punctuation but
    hyphens dropped, spaces as hyphens, repeats numbered -1, -2..."""
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", _prose(text), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        seen.setdefault(f"{slug}-{n}" if n else slug, 1)
    return set(seen)


def test_anchors_follow_githubs_rules():
    assert anchors("# A b\n```\n# not a heading\n```\n## Size: `x`, y!\n# A b\n") == {
        "a-b", "size-x-y", "a-b-1"}


def test_every_link_between_the_docs_resolves():
    broken = []
    for doc in DOCS:
        for target in LINK.findall(_prose(doc.read_text(encoding="utf-8"))):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = (doc.parent / path).resolve() if path else doc
            if not dest.exists():
                broken.append(f"{doc.name}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text(encoding="utf-8")):
                broken.append(f"{doc.name}: {target} (no such heading)")
    assert not broken, broken


def test_every_config_key_is_in_the_readmes_table():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("| key | default | meaning |"):]
    table = table[:table.index("\n\n")]
    keys = {k.strip() for row in table.splitlines()[2:] for k in row.split("|")[1].split(",")}
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert fields - keys == set(), "config keys missing from the README's table"
    assert keys - fields == set(), "the README's table names keys the config does not have"


def _options(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _options(sub)
        else:
            yield from (o for o in action.option_strings if o.startswith("--") and o != "--help")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_of_every_command_is_documented(command):
    text = "".join(doc.read_text(encoding="utf-8") for doc in DOCS)
    parser = importlib.import_module(f"fast_nst.commands.{command}").parser()
    missing = sorted({o for o in _options(parser) if not re.search(re.escape(o) + r"(?!\w)", text)})
    assert missing == [], f"{command}: options in no doc"


# The README's words for defaults the code spells as "".
_WORDED_DEFAULTS = {"file stem": "", "(required)": "", "(the loss model's)": ""}


def _readme_defaults() -> dict[str, object]:
    """The README's config table as key -> default, each cell read as YAML ("4, 2, null" gives
    three keys' defaults)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("| key | default | meaning |"):]
    out = {}
    for row in table[:table.index("\n\n")].splitlines()[2:]:
        keys, default = (c.strip() for c in row.split("|")[1:3])
        values = [_WORDED_DEFAULTS.get(v, v) if isinstance(v, str) else v for v in yaml.safe_load(f"[{default}]")]
        names = [k.strip() for k in keys.split(",")]
        assert len(values) == len(names), f"README row {keys}: {len(names)} keys, {len(values)} defaults"
        out.update(zip(names, values))
    return out


def _as_default(value, default):
    """The README's ``value`` in the type of the dataclass's ``default`` (YAML reads 3e-4 as a
    string, the config reads it as a float)."""
    if isinstance(default, tuple):
        return tuple(value)
    if isinstance(default, Mapping):
        return types.MappingProxyType(dict(value))
    if isinstance(default, float) and isinstance(value, (str, int)):
        return float(value)
    return value


def test_the_readmes_config_defaults_are_the_codes():
    defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                for f in dataclasses.fields(TrainConfig)}
    wrong = {k: (v, defaults[k]) for k, v in _readme_defaults().items()
             if _as_default(v, defaults[k]) != defaults[k]}
    assert wrong == {}, "README default vs code default"


# A command line in the docs: train.py, eval.py, python -m fast_nst.<command> or a console
# script, up to the end of its line (a trailing backslash continues it) or code span.
_COMMAND_LINE = re.compile(r"(?:(train|eval)\.py|-m fast_nst\.(\w+)|fast-nst-([a-z-]+))((?:[^`\n|#]|\\\n)*)")


def _all_options(parser: argparse.ArgumentParser) -> set[str]:
    return {o for action in parser._actions for o in action.option_strings} | set(_options(parser))


def test_every_option_the_docs_pass_a_command_exists():
    """The other direction of the test above: a flag in a documented command line is one the
    command takes (a renamed flag leaves no stale example behind)."""
    parsers = {c: _all_options(importlib.import_module(f"fast_nst.commands.{c}").parser()) for c in COMMANDS}
    unknown, seen = [], 0
    for doc in DOCS:
        for m in _COMMAND_LINE.finditer(doc.read_text(encoding="utf-8")):
            command = m.group(1) or m.group(2) or m.group(3).replace("-", "_")
            if command not in parsers:  # fast-nst-wave: a Hub repository's name, not a command
                continue
            seen += 1
            unknown += [f"{doc.name}: {flag} in {m.group(0).strip()!r}"
                        for flag in re.findall(r"(?<![\w-])--[a-zA-Z]\w*", m.group(4)) if flag not in parsers[command]]
    assert seen > 100  # the pattern still finds the docs' command lines
    assert unknown == []


def test_the_readmes_console_scripts_are_the_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    listed = readme[readme.index("Every command also has a console script"):]
    listed = listed[:listed.index("\n\n")]
    scripts = set(re.findall(r"`fast-nst-([a-z-]+)`", listed))
    setup = (ROOT / "setup.py").read_text(encoding="utf-8")
    assert {s.replace("-", "_") for s in scripts} == set(COMMANDS)
    assert all(f'"{c}"' in setup for c in COMMANDS if c != "stylize_dataset")
    assert "fast-nst-stylize-dataset=fast_nst.commands.stylize_dataset:main" in setup


def test_the_docs_python_examples_import_what_exists():
    """Every ``from fast_nst... import name`` in the docs' Python examples resolves, and every
    example parses."""
    missing = []
    for doc in DOCS:
        for block in re.findall(r"^```python\n(.*?)^```", doc.read_text(encoding="utf-8"), flags=re.S | re.M):
            for node in ast.walk(ast.parse(block)):
                if isinstance(node, ast.ImportFrom) and node.module.split(".")[0] == "fast_nst":
                    module = importlib.import_module(node.module)
                    missing += [f"{doc.name}: {node.module}.{a.name}" for a in node.names if not hasattr(module, a.name)]
    assert missing == []
