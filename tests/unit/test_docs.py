"""The documentation as a newcomer meets it: README.md a short front page, docs/*.md the rest.

Checked without building the site (``make docs`` builds it, warnings as errors): the README's length,
every relative link and ``#anchor``, that every page is reachable (from the README and from a table of
contents of the site), that every ``make`` target named exists, and that the demo numbers the README
states are those of the committed ``results/demo``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
README = REPO / "README.md"
#: The README is a front page; the rest lives in docs/.
README_MAX_LINES = 200

_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})(.*)$")
_INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.S)
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def _pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def _split(path: Path) -> tuple[str, list[tuple[str, str]]]:
    """``(prose, blocks)`` of a Markdown file: the text outside fenced blocks, and each fenced block as
    ``(info string, body)``."""
    prose, blocks, body = [], [], []
    fence = info = None
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _FENCE.match(line)
        if fence is None and match:
            fence, info, body = match.group(1), match.group(2).strip(), []
        elif fence is not None and match and match.group(1).startswith(fence) and not match.group(2).strip():
            blocks.append((info, "\n".join(body)))
            fence = None
        elif fence is not None:
            body.append(line)
        else:
            prose.append(line)
    assert fence is None, f"{path.name}: a fenced block is not closed"
    return "\n".join(prose), blocks


def _links(path: Path) -> list[str]:
    """Link and image targets of ``path``, outside code."""
    prose, _ = _split(path)
    return _LINK.findall(_INLINE_CODE.sub("", prose))


def github_slug(heading: str) -> str:
    """The anchor GitHub (and MyST's ``myst_heading_anchors``) gives a heading: code and link markup
    dropped, lower case, punctuation removed, spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    prose, _ = _split(path)
    seen: dict[str, int] = {}
    anchors = set()
    for line in prose.splitlines():
        match = _HEADING.match(line)
        if match:
            slug = github_slug(match.group(2))
            anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
    return anchors


def test_github_slug_follows_githubs_rule() -> None:
    assert github_slug("The runner: stfpm run, reproduce, report") == "the-runner-stfpm-run-reproduce-report"
    assert github_slug("Why `make docs` (Sphinx)?") == "why-make-docs-sphinx"
    assert github_slug("See [Metrics](metrics.md)") == "see-metrics"


def test_readme_is_a_front_page() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail to docs/"


@pytest.mark.parametrize("path", [README, *_pages()], ids=lambda p: p.relative_to(REPO).as_posix())
def test_relative_links_and_anchors_resolve(path: Path) -> None:
    broken = []
    for target in _links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target}: no file {linked}")
        elif anchor and (linked.suffix != ".md" or anchor not in _anchors(linked)):
            broken.append(f"{target}: no heading with the anchor #{anchor} in {linked.name}")
    assert broken == []


def test_every_page_is_linked_from_the_readme() -> None:
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in _links(README)}
    assert [p.name for p in _pages() if p.resolve() not in linked] == []


def test_every_page_is_in_a_table_of_contents_of_the_site() -> None:
    listed = set()
    for page in _pages():
        for info, body in _split(page)[1]:
            if info == "{toctree}":
                listed |= {line.strip().removesuffix(".md") for line in body.splitlines()
                           if line.strip() and not line.strip().startswith(":")}
    assert [p.name for p in _pages() if p.stem != "index" and p.stem not in listed] == []
    assert sorted(e for e in listed if not e.startswith("_") and not (DOCS / f"{e}.md").is_file()) == []


def _makefile_targets() -> set[str]:
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z][\w-]*)\s*:(?!=)", text, re.M))


def test_every_make_target_named_exists() -> None:
    targets = _makefile_targets()
    assert {"reproduce", "test", "docs", "lint", "lock"} <= targets
    named = {}
    for path in [README, *_pages()]:
        prose, blocks = _split(path)
        shell = [body for info, body in blocks if info == "bash"]  # shell commands live in bash blocks
        code = "\n".join([*(m.group(2) for m in _INLINE_CODE.finditer(prose)), *shell])
        for name in re.findall(r"(?<![\w./$-])make[ \t]+([a-z][\w-]*)", code):
            named.setdefault(name, path.name)
    assert {name: page for name, page in named.items() if name not in targets} == {}


def test_the_readmes_demo_numbers_are_the_committed_ones() -> None:
    """The README states the committed demo's means; they must be those of results/demo/*/metrics.json,
    rounded as the README rounds them."""
    text = " ".join(README.read_text(encoding="utf-8").split())
    match = re.search(r"mean image AUROC (\d\.\d+), pixel AUROC (\d\.\d+), AU-PRO (\d\.\d+)", text)
    assert match, "the README no longer states the demo's means in the expected words"
    records = [json.loads(p.read_text(encoding="utf-8"))["metrics"]
               for p in sorted((REPO / "results" / "demo").glob("*/metrics.json"))]
    assert len(records) == 2  # the two demo categories
    for stated, key in zip(match.groups(), ("image_auroc", "pixel_auroc", "au_pro")):
        mean = sum(r[key] for r in records) / len(records)
        decimals = len(stated.split(".")[1])
        assert f"{mean:.{decimals}f}" == stated, f"{key}: README {stated}, results/demo {mean}"


def test_the_configuration_page_names_every_field() -> None:
    from stfpm_lib.config import FIELD_SPECS, PRESETS

    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert [name for name in [*FIELD_SPECS, *PRESETS] if f"`{name}`" not in text] == []


def test_no_page_cites_the_private_reference() -> None:
    """Readers do not have the project's reference notes: pages cite the public sources instead."""
    cites = [p.name for p in [README, *_pages()]
             if re.search(r"reference §|STFPM_REFERENCE", p.read_text(encoding="utf-8"))]
    assert cites == []


def _shown_commands(prefix: str) -> list[tuple[str, str]]:
    """``(page, command)`` for every command starting with ``prefix`` in a ``bash`` block of the README or the
    docs: continuation lines joined, trailing comments dropped."""
    out = []
    for path in [README, *_pages()]:
        for info, body in _split(path)[1]:
            if info not in ("bash", "sh", "shell", "console"):
                continue
            for command in body.replace("\\\n", " ").splitlines():
                command = command.strip().removeprefix("$ ")
                if command.startswith(prefix + " "):
                    out.append((path.name, command))
    return out


def test_the_shown_stfpm_commands_parse_with_the_real_command_line() -> None:
    """Every ``stfpm ...`` command the README and the docs show is accepted by the real parser (none runs:
    most need MVTec AD); ``stfpm bench NAME`` names a benchmark, and the speed benchmark's options parse."""
    import shlex

    from stfpm_lib.bench.speed_bench import _parser as speed_parser
    from stfpm_lib.runner.cli import build_parser

    commands = _shown_commands("stfpm")
    assert len(commands) >= 20, commands  # the docs show the commands in bash blocks
    parser, bad = build_parser(), []
    for page, command in commands:
        argv = shlex.split(command, comments=True)[1:]
        try:
            args = parser.parse_args(argv)
            if args.command == "bench":
                name, *rest = args.bench_args
                assert name in ("metrics", "speed", "bootstrap", "figures"), name
                if name == "speed":
                    speed_parser().parse_args(rest)
        except (SystemExit, AssertionError, ValueError) as exc:
            bad.append(f"{page}: {command} ({type(exc).__name__}: {exc})")
    assert bad == []


def test_the_command_parser_check_sees_a_wrong_command() -> None:
    from stfpm_lib.runner.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["reproduce", "--no-such-option"])


def test_one_version_source() -> None:
    """``stfpm_lib.__version__`` is the version; CITATION.cff states it and the CHANGELOG has its section."""
    import stfpm_lib

    citation = (REPO / "CITATION.cff").read_text(encoding="utf-8")
    assert re.search(rf"^version:\s*\"?{re.escape(stfpm_lib.__version__)}\"?\s*$", citation, re.M)
    assert f"## [{stfpm_lib.__version__}]" in (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
