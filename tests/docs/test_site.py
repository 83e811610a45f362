"""The documentation site: it builds strictly, and what it cites exists.

`mkdocs build --strict` fails on a broken link or anchor, a page missing from the navigation, or a snippet whose
file is gone; the configuration reference and the API table are generated from their sources while it builds
(docs/hooks/generated.py). The threat model names the tests that pin each mitigation: every name must be a test.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
CITED = re.compile(r"`(tests/[\w/]+\.py)((?:::\w+(?:\[[^\]]*\])?)?)`|`::(\w+)(?:\[[^\]]*\])?`")


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    """The site builds with --strict: no broken link, anchor, snippet or page left out of the navigation."""
    mkdocs = Path(sys.executable).parent / "mkdocs"
    if not mkdocs.exists():
        pytest.fail(f"{mkdocs} not found: pip install mkdocs-material (part of the test extras; make test installs it)")
    run = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    reference = (tmp_path / "site" / "reference" / "configuration.html").read_text()
    assert "trusted_proxies" in reference and "session.cookie_name" in reference


def _test_names(path: Path) -> set[str]:
    return set(re.findall(r"^(?:async )?def (test_\w+)\(", path.read_text(), re.M))


def _citations() -> list[tuple[Path, str, str]]:
    """(page, test file, test name) for every test a page of the site or the README cites."""
    found = []
    for page in [*DOCS.rglob("*.md"), REPO / "README.md", REPO / "THREAT_MODEL.md"]:
        current = None
        for match in CITED.finditer(page.read_text()):
            if match[1]:
                current = match[1]
                if match[2]:
                    found.append((page, current, match[2].removeprefix("::").split("[")[0]))
            elif current is not None:
                found.append((page, current, match[3]))
    return found


def test_every_cited_test_exists() -> None:
    """Each `tests/file.py::test_name` (and each `::test_name` after it) the docs cite is a test in that file."""
    citations = _citations()
    assert len(citations) > 100, "the threat model cites its tests; the pattern found almost none"
    missing = []
    for page, file, name in citations:
        path = REPO / file
        if not path.exists() or name not in _test_names(path):
            missing.append(f"{page.relative_to(REPO)}: {file}::{name}")
    assert missing == []


def test_the_readme_is_a_front_door() -> None:
    """README.md stays short: what and why, the two commands, a recipe, and links to the site."""
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    assert "make demo" in text and "make test" in text
    for link in re.findall(r"\]\((docs/[^)#]+)", text):
        assert (REPO / link).exists(), link


def test_the_readme_recipe_makes_a_valid_gateway(tmp_path: Path) -> None:
    """README's "Protect my app" recipe runs as written, up to `serve`: keys, config and a user are created in a
    temporary folder, and check-config accepts them."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Protect my app", 1)[1].split("\n## ", 1)[0]
    (recipe,) = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    assert recipe.startswith("D=$(mktemp -d)") and "&& mfa-gateway serve" in recipe
    checked = recipe.split(" && mfa-gateway serve", 1)[0]
    env = {**os.environ, "TMPDIR": str(tmp_path), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    run = subprocess.run(
        ["bash", "-euc", checked + '\necho "D=$D"'],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert ": valid (" in run.stdout
    folder = Path(run.stdout.split("D=", 1)[1].splitlines()[0])
    assert {"keyring.json", "signing.json", "gateway.yaml", "users.yaml"} <= {p.name for p in folder.iterdir()}
