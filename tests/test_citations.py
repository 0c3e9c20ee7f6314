"""Every documentation citation holds at every tag it names: its lines at the newest tag, "L at T" (or "L at T1–T2")
where the numbering differs, read from a mirror of apache/cloudstack-documentation (skipped without one).

A citation's tags are "A–B" (or one tag A); its lines hold at every mirrored tag from A to B that no "L at …" names,
and the text there is the newest tag's (wording edits aside). Citations of "each tag's own" list or steps differ in
content from tag to tag and are left out.
"""

from __future__ import annotations

import difflib
import os
import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

from inventory.rulebook import DOCS_REPO, RULES, Source

MIRROR = Path(os.environ.get("CSI_DOCS_MIRROR", "/work/.mirror/apache+cloudstack-documentation/repo"))
TAG = r"4\.\d+\.\d+\.\d+"
SIMILAR = 0.8  # mean per-line similarity that counts as the same passage (typo fixes, "VMs" → "instances")

pytestmark = pytest.mark.skipif(not (MIRROR / "HEAD").exists(), reason="no mirror of the documentation repository")


def _version(tag: str) -> tuple[int, ...]:
    return tuple(int(n) for n in tag.split("."))


@cache
def _tags() -> list[str]:
    out = subprocess.run(["git", "-C", str(MIRROR), "tag"], capture_output=True, text=True, check=True).stdout
    return sorted((t for t in out.split() if re.fullmatch(TAG, t)), key=_version)


@cache
def _lines(tag: str, path: str) -> tuple[str, ...] | None:
    shown = subprocess.run(["git", "-C", str(MIRROR), "show", f"{tag}:{path}"], capture_output=True, text=True)
    return tuple(shown.stdout.split("\n")) if shown.returncode == 0 else None


def _span(lines: str) -> tuple[int, int]:
    first, _, last = lines.partition("-")
    return int(first), int(last or first)


def _claims(source: Source) -> dict[str, tuple[int, int]]:
    """The lines the citation says the passage is at, for every mirrored tag in its range."""
    named = re.match(rf"(?:each tag )?({TAG})(?:–({TAG}))?", source.tags)
    assert named, (source, "its tags start with the range it holds for")
    low, high = _version(named.group(1)), _version(named.group(2) or named.group(1))
    claims = {t: _span(source.at) for t in _tags() if low <= _version(t) <= high}
    for lines, first, last in re.findall(rf"(\d+(?:-\d+)?) at ({TAG})(?:–({TAG}))?", source.tags):
        for t in _tags():
            if _version(first) <= _version(t) <= _version(last or first):
                assert t in claims, (source, f"{lines} at {t}: outside the citation's range")
                claims[t] = _span(lines)
    return claims


def _similarity(a: tuple[str, ...], b: tuple[str, ...]) -> float:
    if len(a) != len(b) or not a:
        return 0.0
    return sum(difflib.SequenceMatcher(None, x, y).ratio() for x, y in zip(a, b, strict=True)) / len(a)


def _doc_sources() -> list[tuple[str, Source]]:
    return [(rule.id, s) for rule in RULES.values() for s in rule.sources
            if s.repo == DOCS_REPO and "own" not in s.tags]


@pytest.mark.parametrize(("rule_id", "source"), _doc_sources(), ids=lambda x: x if isinstance(x, str) else x.at)
def test_a_documentation_citation_holds_at_every_tag_it_names(rule_id: str, source: Source) -> None:
    assert not re.search(rf"\d before {TAG[:5]}", source.tags), (rule_id, "name the tags, not \"before\" a release")
    claims = _claims(source)
    newest = max(claims, key=_version)
    assert claims[newest] == _span(source.at), (rule_id, "the lines named first are the newest tag's")
    whole = _lines(newest, source.path)
    assert whole is not None, (rule_id, source.path, newest)
    first, last = claims[newest]
    passage = whole[first - 1:last]
    wrong = []
    for tag, (first, last) in sorted(claims.items(), key=lambda c: _version(c[0])):
        text = _lines(tag, source.path)
        if text is None or _similarity(text[first - 1:last], passage) < SIMILAR:
            wrong.append(f"{first}-{last} at {tag}")
    assert not wrong, (rule_id, source.path, source.at, "not the passage:", wrong)
