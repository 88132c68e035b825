"""Every reference in the documentation resolves: relative markdown links (file and #anchor), textual
references to a section ("README, Section", "docs/guide.md, Section", 'docs/x.md "Section"',
'"Section" in docs/x.md'), and paths of repository files. Read from README.md, CHANGELOG.md,
docs/*.md, every command's --help text, the sources of ner_core, study and storage (docstrings and
comments), the Makefile and scripts/. Fast: no training, no network."""

from __future__ import annotations

import argparse
import importlib
import re
import signal
import unicodedata
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ner_core", "study", "storage")
# every command whose --help a user reads; modules with a main() found on disk are added to these
COMMANDS = (
    "ner_core.train",
    "ner_core.predict",
    "ner_core.ensemble",
    "ner_core.datasets",
    "ner_core.bench",
    "ner_core.spread",
    "study.run",
    "study.best",
    "study.bench",
    "study.dashboard",
    "study.report",
    "storage.bench",
    "storage.crashbench",
)
# a commit hash: 7 to 40 hex digits with both a digit and a letter
COMMIT = re.compile(r"\b(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b")
FENCE = re.compile(r"^\s*(```|~~~)")


# --- headings and anchors -------------------------------------------------------------------------


def plain(heading: str) -> str:
    """A heading's text as a reader sees it: links reduced to their text, no emphasis or code marks."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    return text.replace("`", "").replace("**", "").strip()


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped except - and _, spaces to -."""
    text = plain(heading).lower()
    kept = "".join(c for c in text if c in "-_ " or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


@cache
def headings(path: Path) -> tuple[str, ...]:
    """The headings of a markdown file (not inside fenced code), as written."""
    found, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and (m := re.match(r"^#{1,6}\s+(.+?)\s*#*\s*$", line)):
            found.append(m.group(1))
    return tuple(found)


@cache
def anchors(path: Path) -> frozenset[str]:
    """Every #anchor GitHub gives the headings of a file: a repeated slug gets -1, -2, ..."""
    seen: dict[str, int] = {}
    result = set()
    for heading in headings(path):
        base = slug(heading)
        n = seen.get(base, 0)
        result.add(base if n == 0 else f"{base}-{n}")
        seen[base] = n + 1
    return frozenset(result)


def heading_at(text: str, path: Path) -> bool:
    """Whether ``text`` begins with one of the headings of ``path`` (then a boundary)."""
    text = plain(text).lower()
    for heading in headings(path):
        h = plain(heading).lower()
        if text.startswith(h) and (len(text) == len(h) or not text[len(h)].isalnum()):
            return True
    return False


def is_heading(text: str, path: Path) -> bool:
    return plain(text).lower().rstrip() in {plain(h).lower() for h in headings(path)}


# --- the texts --------------------------------------------------------------------------------------


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]


def capture_parser(module: str) -> argparse.ArgumentParser:
    """The parser a command's main() builds, caught as it starts to parse (nothing runs after that)."""

    class Caught(Exception):
        def __init__(self, parser: argparse.ArgumentParser):
            self.parser = parser

    def catch(self, *args, **kwargs):
        raise Caught(self)

    original = argparse.ArgumentParser.parse_known_args
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    argparse.ArgumentParser.parse_known_args = catch
    try:
        importlib.import_module(module).main([])
    except Caught as caught:
        return caught.parser
    finally:
        argparse.ArgumentParser.parse_known_args = original
        for s, handler in handlers.items():
            signal.signal(s, handler)
    raise AssertionError(f"python -m {module}: main() returned without parsing its arguments")


def help_texts(parser: argparse.ArgumentParser, name: str) -> list[tuple[str, str]]:
    """A parser's --help, and each subcommand's."""
    texts = [(f"{name} --help", parser.format_help())]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command, sub in action.choices.items():
                texts += help_texts(sub, f"{name} {command}")
    return texts


def commands() -> list[str]:
    found = set(COMMANDS)
    for package in PACKAGES:
        for path in (ROOT / package).glob("*.py"):
            source = path.read_text(encoding="utf-8")
            if "def main(" in source and "argparse" in source:
                found.add(f"{package}.{path.stem}")
    return sorted(found)


def source_text(path: Path) -> str:
    """A source file read as prose: string literals split over lines joined, comment lines joined."""
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"(?<=[^\\])\"\s*\n\s*f?\"", "", text)  # "one " \n "string"
    return re.sub(r"\n\s*#+ ?", " ", text)


def texts() -> list[tuple[str, str, Path]]:
    """(where, text, the folder its relative paths start from) for everything a reader reads."""
    out = [(str(p.relative_to(ROOT)), p.read_text(encoding="utf-8"), p.parent) for p in markdown_files()]
    for package in PACKAGES:
        for path in sorted((ROOT / package).glob("*.py")):
            out.append((str(path.relative_to(ROOT)), source_text(path), ROOT))
    out.append(("Makefile", re.sub(r"\n#+ ?", " ", (ROOT / "Makefile").read_text(encoding="utf-8")), ROOT))
    for path in sorted((ROOT / "scripts").glob("*")):
        if path.is_file():
            out.append((str(path.relative_to(ROOT)), re.sub(r"\n#+ ?", " ", path.read_text(encoding="utf-8")), ROOT))
    for module in commands():
        for where, text in help_texts(capture_parser(module), f"python -m {module}"):
            out.append((where, text, ROOT))
    return out


@pytest.fixture(scope="module")
def all_texts() -> list[tuple[str, str, Path]]:
    return texts()


# --- the checks -------------------------------------------------------------------------------------

LINK = re.compile(r"\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^()\s]+)\)")
PATH = re.compile(
    r"(?<![\w./<>$-])((?:ner_core|study|storage|tests|docs|scripts)/[\w./-]*\w\.(?:py|md|sh|toml|txt)"
    r"|(?:README|CHANGELOG)\.md|pyproject\.toml)(?![\w/])"
)
# a bare page name inside docs/ ("in earlier-studies.md"), resolved against docs/
BARE_PAGE = re.compile(r"(?<![\w./<>$-])([a-z][\w-]*\.md)(?![\w/])")
# files that commands write, named in the text but not in the repository
WRITTEN = {"report.md"}
PAGE = r"((?:docs/)?[\w-]+\.md|README(?:\.md)?)"


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def page_path(name: str, base: Path) -> Path:
    if name in ("README", "README.md"):
        return ROOT / "README.md"
    return ROOT / name if "/" in name else base / name


def broken_links(where: str, text: str, base: Path) -> list[str]:
    """Relative markdown links (in markdown files: code has brackets of its own) that do not resolve."""
    problems = []
    for match in LINK.finditer(text):
        target = match.group(1)
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        path = (base / file).resolve() if file else ROOT / where
        if not path.exists():
            problems.append(f"{where}: link to {target}: no file {file}")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            problems.append(f"{where}: link to {target}: no heading with anchor #{anchor} in {shown(path)}")
    return problems


def broken_sections(where: str, text: str, base: Path) -> list[str]:
    """Textual references to a section that names no heading of its page."""
    problems = []
    flat = " ".join(LINK.sub(lambda m: m.group(0).split("](")[0], text).split())  # links: checked above
    quoted = [
        re.compile(PAGE + r"(?:'s)?,?\s+\"([^\"]+)\""),  # README "Section", docs/x.md, "Section"
        re.compile(r"\"([^\"]+)\"\s+in\s+(?:the\s+)?" + PAGE),  # "Section" in docs/x.md
    ]
    for n, pattern in enumerate(quoted):
        for match in pattern.finditer(flat):
            page, section = match.groups() if n == 0 else match.groups()[::-1]
            if "/" not in page and not page.startswith("README") and not where.startswith("docs/"):
                continue  # a bare page name means a docs/ page only where docs/ pages say it
            path = page_path(page, base)
            if not path.exists():
                problems.append(f'{where}: {page} "{section}": no file {page}')
            elif not is_heading(section, path):
                problems.append(f'{where}: {page} "{section}": no such heading in {shown(path)}')
    # README, Section / docs/x.md, Section
    for match in re.finditer(r"((?:docs/)[\w-]+\.md|README(?:\.md)?)(?:'s)?,\s+(?!\")(.{1,120})", flat):
        page, rest = match.groups()
        if re.match(r"(?:docs/)?[\w-]+\.md|README|CHANGELOG|and\b|or\b", rest):  # a list of pages
            continue
        path = page_path(page, base)
        if path.exists() and not heading_at(rest, path):
            problems.append(f"{where}: {page}, {rest[:50]}...: no such heading in {shown(path)}")
    return problems


def missing_paths(where: str, text: str, base: Path) -> list[str]:
    problems = []
    for match in PATH.finditer(text):
        if not (ROOT / match.group(1)).exists():
            problems.append(f"{where}: {match.group(1)}: no such file in the repository")
    if where.startswith("docs/"):
        for match in BARE_PAGE.finditer(text):
            name = match.group(1)
            if name not in WRITTEN and name not in ("README.md", "CHANGELOG.md") and not (base / name).exists():
                problems.append(f"{where}: {name}: no such page in docs/")
    return problems


def test_every_link_resolves(all_texts):
    problems = [p for where, text, base in all_texts if where.endswith(".md") for p in broken_links(where, text, base)]
    assert not problems, "\n".join(problems)


def test_every_section_reference_names_a_heading(all_texts):
    problems = [p for where, text, base in all_texts for p in broken_sections(where, text, base)]
    assert not problems, "\n".join(problems)


def test_every_file_path_exists(all_texts):
    problems = [p for where, text, base in all_texts for p in missing_paths(where, text, base)]
    assert not problems, "\n".join(problems)


def test_the_help_texts_were_read(all_texts):
    helps = {where for where, _, _ in all_texts if where.endswith("--help")}
    for module in COMMANDS:
        assert f"python -m {module} --help" in helps
    assert "python -m ner_core.datasets fetch --help" in helps  # subcommands too


def test_readme_is_short_and_names_no_commit():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 300, f"README.md has {len(readme.splitlines())} lines (at most 300)"
    hashes = COMMIT.findall(readme)
    assert not hashes, f"README.md names commits: {hashes}"


# --- the checker checks -------------------------------------------------------------------------------


def test_slugs_follow_github():
    assert slug("Three or five, measured again") == "three-or-five-measured-again"
    assert slug("Refit on train + dev") == "refit-on-train--dev"
    assert slug("`--top`") == "--top"
    assert slug("One model or an ensemble?") == "one-model-or-an-ensemble"
    assert slug("ner_core.train") == "ner_coretrain"


def test_the_checks_catch_what_is_broken(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## A section\n\n## A section\n", encoding="utf-8")
    assert anchors(page) == {"title", "a-section", "a-section-1"}
    assert broken_links("docs/x.md", "[ok](page.md#a-section-1)", tmp_path) == []
    assert broken_links("docs/x.md", "[x](gone.md)", tmp_path)
    assert broken_links("docs/x.md", "[x](page.md#no-section)", tmp_path)
    assert broken_sections("Makefile", "see README, No Such Section here", ROOT)
    assert broken_sections("Makefile", 'see README "No such section"', ROOT)
    assert broken_sections("Makefile", "(docs/guide.md, No such section)", ROOT)
    assert broken_sections("Makefile", '"No such section" in docs/guide.md', ROOT)
    assert broken_sections("Makefile", '(docs/nothing.md "Anything")', ROOT)
    assert not broken_sections("Makefile", "(docs/guide.md, Within a time budget)", ROOT)
    assert not broken_sections("Makefile", "(README, Install)", ROOT)
    assert missing_paths("Makefile", "see study/no_such_module.py and docs/nothing.md", ROOT) == [
        "Makefile: study/no_such_module.py: no such file in the repository",
        "Makefile: docs/nothing.md: no such file in the repository",
    ]
    assert missing_paths("Makefile", "results/<study>/report.md and study/best.py", ROOT) == []
