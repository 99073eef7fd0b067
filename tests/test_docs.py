"""The README and docs/: every relative link reaches a file and, with a #fragment, one of its headings; the README
stays a five-minute read; every sentence that names a command option or a make target names one that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from harness.cli import cli

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Pages other sessions write (kind, generative services, file inputs): linked before they land.
PENDING = {"kind.md", "llm.md", "file-inputs.md"}
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    headings = re.findall(r"^#+ (.+)$", page.read_text(), re.MULTILINE)
    return {slug(heading) for heading in headings}


@pytest.mark.parametrize("page", PAGES, ids=[str(page.relative_to(ROOT)) for page in PAGES])
def test_every_relative_link_reaches_a_file_and_a_heading(page: Path) -> None:
    # Code is no link, even where it reads like one (a pattern's `[a-z0-9]([-a-z0-9]*)` in docs/scenario.md).
    text = re.sub(r"`[^`\n]*`", "", re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL))
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target):
            continue
        path, _, fragment = target.partition("#")
        found = (page.parent / path).resolve() if path else page
        if found.name in PENDING and not found.exists():
            continue
        assert found.exists(), f"{page.name}: {target}"
        if fragment:
            assert fragment in anchors(found), f"{page.name}: {target}: no heading '{fragment}' in {found.name}"


def test_the_readme_is_a_five_minute_read() -> None:
    text = (ROOT / "README.md").read_text()
    prose = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    # About 250 words a minute, beside its sample output and commands.
    assert len(prose.split()) <= 1250, len(prose.split())
    for heading in ("## Quick start", "## Reading the verdict", "## Next"):
        assert heading in text


def test_every_make_target_the_pages_name_exists() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, re.MULTILINE))
    for page in PAGES:
        for target in re.findall(r"`make ([a-z][\w-]*)", page.read_text()):
            assert target in targets, f"{page.name}: make {target}"


def test_every_run_option_the_pages_name_exists() -> None:
    help_text = CliRunner().invoke(cli, ["run", "--help"], terminal_width=200).output
    sweep_help = CliRunner().invoke(cli, ["sweep", "--help"], terminal_width=200).output
    for page in PAGES:
        for option in set(re.findall(r"`harness run[^`]*?(--[a-z][\w-]*)", page.read_text())):
            assert option in help_text, f"{page.name}: harness run {option}"
        for option in set(re.findall(r"`harness sweep[^`]*?(--[a-z][\w-]*)", page.read_text())):
            assert option in sweep_help, f"{page.name}: harness sweep {option}"


def test_the_readmes_multipart_request_is_the_one_digits_images_runs() -> None:
    """The README's "Files and forms" shows loadtests/digits-images.yaml's request as it is."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Files and forms") : text.index("## Next")]
    (block,) = re.findall(r"```yaml\n(.*?)```", section, flags=re.DOTALL)
    shown = yaml.safe_load(block)
    scenario = yaml.safe_load((ROOT / "loadtests" / "digits-images.yaml").read_text())
    assert shown["requests"] == scenario["requests"]
    assert shown["payload"]["malformed_fraction"] == scenario["payload"]["malformed_fraction"]
