"""scripts/debian-mirror.sh, the mirror docker-setup.sh builds its base image from: read from this machine's apt
sources (deb822 .sources stanzas and classic lines), and a plain error when there is none."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "debian-mirror.sh"

DEBIAN_SOURCES = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian http://second.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main
"""


def mirror(
    tmp_path: Path, *, sources: dict[str, str], listed: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    parts = tmp_path / "sources.list.d"
    parts.mkdir(exist_ok=True)
    for name, text in sources.items():
        (parts / name).write_text(text)
    sources_list = tmp_path / "sources.list"
    if listed is not None:
        sources_list.write_text(listed)
    environment = {"PATH": "/usr/bin:/bin", "APT_SOURCES_LIST": str(sources_list), "APT_SOURCES_PARTS": str(parts)}
    return subprocess.run(
        ["bash", str(SCRIPT), "bookworm"], env={**environment, **env}, capture_output=True, text=True, check=False
    )


@pytest.mark.integration
def test_a_deb822_stanza_that_lists_the_suite(tmp_path: Path) -> None:
    result = mirror(tmp_path, sources={"debian.sources": DEBIAN_SOURCES})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "http://mirror.example/debian\n"
    assert "debian.sources, which lists bookworm" in result.stderr


@pytest.mark.integration
def test_disabled_and_source_only_stanzas_are_skipped(tmp_path: Path) -> None:
    skipped = (
        "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n\n"
        "Enabled: no\nTypes: deb\nURIs: http://off.example/debian\nSuites: bookworm\n\n"
    )
    result = mirror(tmp_path, sources={"a.sources": skipped, "b.sources": DEBIAN_SOURCES})
    assert result.stdout == "http://mirror.example/debian\n", result.stderr


@pytest.mark.integration
def test_a_classic_line_with_options(tmp_path: Path) -> None:
    listed = (
        "# deb http://commented.example/debian bookworm main\n"
        "deb-src http://src.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/usr/share/keyrings/debian.gpg] http://classic.example/debian bookworm main\n"
    )
    result = mirror(tmp_path, sources={}, listed=listed)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "http://classic.example/debian\n"


@pytest.mark.integration
def test_another_release_lends_its_mirror_but_a_security_archive_does_not(tmp_path: Path) -> None:
    trixie = "Types: deb\nURIs: http://security.example/debian-security\nSuites: trixie-security\n\n"
    trixie += "Types: deb\nURIs: http://trixie.example/debian\nSuites: trixie trixie-updates\n"
    result = mirror(tmp_path, sources={"debian.sources": trixie})
    assert result.stdout == "http://trixie.example/debian\n", result.stderr
    assert "lists no bookworm" in result.stderr
    only_security = "Types: deb\nURIs: http://security.example/debian-security\nSuites: trixie-security\n"
    (tmp_path / "other").mkdir()
    refused = mirror(tmp_path / "other", sources={"s.sources": only_security})
    assert refused.returncode == 1 and "only security archives" in refused.stderr


@pytest.mark.integration
@pytest.mark.parametrize("sources", [{}, {"debian.sources": "# nothing here\n"}])
def test_no_apt_source_is_said_plainly(tmp_path: Path, sources: dict[str, str]) -> None:
    result = mirror(tmp_path, sources=sources)
    assert result.returncode == 1 and result.stdout == ""
    assert "no apt source found in" in result.stderr and "HARNESS_DEBIAN_MIRROR" in result.stderr


@pytest.mark.integration
def test_harness_debian_mirror_wins(tmp_path: Path) -> None:
    result = mirror(tmp_path, sources={}, HARNESS_DEBIAN_MIRROR="http://mine.example/debian")
    assert result.returncode == 0 and result.stdout == "http://mine.example/debian\n"
