"""The user's documents hold together: every link and anchor in README.md and docs/ leads somewhere,
and every `README "Section"` the code, job files and docs send a reader to exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import ROOT

DOCUMENTS = [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def headings(document: Path) -> list[str]:
    return [m.group(1) for m in re.finditer(r"^#{1,6} (.+)$", FENCE.sub("", document.read_text()), re.M)]


def anchors(document: Path) -> set[str]:
    """The fragment each heading gets on GitHub: lower case, punctuation dropped, spaces as dashes,
    a repeated one numbered."""
    found, seen = set(), {}
    for heading in headings(document):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return found


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_and_anchor_leads_somewhere(document):
    broken = []
    for target in LINK.findall(FENCE.sub("", document.read_text())):
        if re.match(r"[a-z]+:", target):  # http(s), mailto: not checked offline
            continue
        path, _, fragment = target.partition("#")
        destination = (document.parent / path).resolve() if path else document
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif fragment and destination.suffix == ".md" and fragment not in anchors(destination):
            broken.append(f"{target}: no such heading")
    assert broken == []


def test_every_readme_section_named_elsewhere_exists():
    sections = {heading.split(":")[0].strip() for heading in headings(ROOT / "README.md")}
    named = {}
    for path in [*ROOT.glob("batchscore/**/*.py"), *ROOT.glob("jobs/*.toml"), *DOCUMENTS]:
        for name in re.findall(r'README "([^"]+)"', path.read_text()):
            named.setdefault(name, path.relative_to(ROOT))
    assert {name: where for name, where in named.items() if name not in sections} == {}


def test_the_exit_code_table_lists_every_exit_code_and_only_those():
    from batchscore.base.errors import ExitCode

    table = (ROOT / "docs" / "operations.md").read_text()
    documented = {int(code) for code in re.findall(r"(?m)^\| (\d+) \|", table)}
    assert documented == {int(code) for code in ExitCode}
