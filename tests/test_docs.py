"""The user docs against the code: every config key and every command option is documented, and
every link between the docs leads somewhere. In-process and fast (no command is run)."""
import argparse
import dataclasses
import importlib
import re
from pathlib import Path

import pytest

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
