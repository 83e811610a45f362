"""The set-up a fresh machine runs: the hashed lock the installs come from, and `.ci/system-packages`.

`.ci/system-packages` runs here against stand-in commands on a PATH of its own (no real package is installed): an
`apt-get` that records what it saw, and `pkill`/`systemctl` that record being called at all.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.helpers.deploy import REPO

SYSTEM_PACKAGES = REPO / ".ci" / "system-packages"
LOCKS = {name: REPO / "requirements" / f"{name}.txt" for name in ("dev", "runtime", "build")}
PINNED = re.compile(r"^([A-Za-z0-9_.\-]+)==(\S+)(?: ;.*)? \\$")


def _pins(lock: Path) -> dict[str, str]:
    lines = lock.read_text().splitlines()
    pins = {m[1].lower(): m[2] for line in lines if (m := PINNED.match(line))}
    assert pins, f"{lock} pins nothing"
    return pins


def test_every_locked_requirement_is_pinned_with_hashes() -> None:
    """Each lock pins exact versions, every one with at least one sha256 hash, and names no index host."""
    for name, lock in LOCKS.items():
        text = lock.read_text()
        blocks = re.split(r"\n(?=\S)", text.strip())
        requirements = [b for b in blocks if not b.startswith("#")]
        assert requirements, name
        for block in requirements:
            assert PINNED.match(block.splitlines()[0]), f"{name}: not an exact pin: {block.splitlines()[0]}"
            assert "--hash=sha256:" in block, f"{name}: no hash for {block.splitlines()[0]}"
        assert "://" not in text, f"{name}: the lock names an index; installs take the one pip is configured with"


def test_the_locks_agree_and_cover_pyproject() -> None:
    """runtime.txt and build.txt hold the versions dev.txt holds, and every declared dependency is locked."""
    dev = _pins(LOCKS["dev"])
    for name in ("runtime", "build"):
        for package, version in _pins(LOCKS[name]).items():
            assert dev.get(package) == version, f"{name}.txt has {package}=={version}, dev.txt {dev.get(package)}"
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    runtime = _pins(LOCKS["runtime"])
    for line in declared:
        requirement = Requirement(line)
        name = requirement.name.lower()
        assert name in dev, f"{name} is declared in pyproject.toml but not locked: run make lock"
        assert requirement.specifier.contains(dev[name], prereleases=True), f"{name}=={dev[name]} is outside {line}"
    for line in project["dependencies"]:
        assert Requirement(line).name.lower() in runtime, f"{line} is missing from requirements/runtime.txt"


def test_license_is_an_spdx_expression() -> None:
    """project.license is an SPDX string (the table form is deprecated and warns on install)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"


def _stand_ins(folder: Path, log: Path) -> dict[str, str]:
    """A PATH on which no test server is installed, apt-get succeeds, and every call is written to `log`."""
    folder.mkdir()
    scripts = {
        "id": "echo 0",
        "apt-get": f'echo "apt-get $* policy=$("$POLICY_RC_D" >/dev/null 2>&1; echo $?)" >> {log}',
        "pkill": f'echo "pkill $*" >> {log}',
        "systemctl": f'echo "systemctl $*" >> {log}',
    }
    for name, body in scripts.items():
        path = folder / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    for tool in ("bash", "sh", "printf", "chmod", "rm", "cat"):
        (folder / tool).symlink_to(_which(tool))
    return {"PATH": str(folder), "HOME": str(folder)}


def _which(tool: str) -> str:
    for directory in ("/usr/bin", "/bin"):
        if (Path(directory) / tool).exists():
            return f"{directory}/{tool}"
    pytest.fail(f"{tool} not found in /usr/bin or /bin")


def _run_system_packages(tmp_path: Path, policy: Path) -> str:
    log = tmp_path / "calls.log"
    log.touch()
    env = {**_stand_ins(tmp_path / "bin", log), "POLICY_RC_D": str(policy)}
    run = subprocess.run(
        [_which("bash"), str(SYSTEM_PACKAGES)], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert run.returncode == 0, run.stderr
    return log.read_text()


def test_system_packages_starts_no_service_and_stops_none(tmp_path: Path) -> None:
    """Installing the test servers' packages forbids their services from starting (policy-rc.d answers 101 during
    apt-get), then removes that policy; nothing is stopped, so an operator's own nginx or caddy is never touched."""
    policy = tmp_path / "policy-rc.d"
    calls = _run_system_packages(tmp_path, policy)
    installs = [line for line in calls.splitlines() if line.startswith("apt-get") and " install " in line]
    assert installs and all(line.endswith("policy=101") for line in installs), calls
    assert not policy.exists(), "the temporary policy-rc.d was left behind"
    assert "pkill" not in calls and "systemctl" not in calls, calls


def test_system_packages_keeps_an_existing_policy(tmp_path: Path) -> None:
    """A policy-rc.d the machine already has is used as it is and left in place."""
    policy = tmp_path / "policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 0\n")
    policy.chmod(0o755)
    calls = _run_system_packages(tmp_path, policy)
    assert policy.read_text() == "#!/bin/sh\nexit 0\n"
    assert "pkill" not in calls and "systemctl" not in calls, calls


@pytest.mark.parametrize("name", ["Makefile", "Dockerfile"])
def test_installs_come_from_the_lock(name: str) -> None:
    """make and the image install with --require-hashes from the lock, never by resolving ranges on install day."""
    text = (REPO / name).read_text()
    assert "--require-hashes" in text
    assert re.search(r"-r (\$\(LOCK\)|requirements/\w+\.txt)", text)
    assert "--upgrade pip" not in text


def test_ci_runs_the_readme_test_command() -> None:
    """`.ci/run` runs `make test`, the command the README gives."""
    assert "make test" in (REPO / ".ci" / "run").read_text()
    assert re.search(r"^make test\b", (REPO / "README.md").read_text(), re.M), "README.md gives no `make test` line"
    assert os.access(REPO / "scripts" / "test-latest", os.X_OK)


def test_axe_core_is_pinned_and_installed_from_the_lock() -> None:
    """axe-core, which the browser test injects, is pinned to one version with its integrity hash in
    package-lock.json, and `make test` installs it with `npm ci` (the lock as it is), never `npm install`."""
    manifest = json.loads((REPO / "package.json").read_text())
    version = manifest["devDependencies"]["axe-core"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"axe-core must be pinned to one version, not {version!r}"
    locked = json.loads((REPO / "package-lock.json").read_text())["packages"]["node_modules/axe-core"]
    assert locked["version"] == version and locked["integrity"].startswith("sha512-")
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^test: .*\bjs-deps\b", makefile, re.MULTILINE)
    assert "npm ci --ignore-scripts" in makefile and "npm install" not in makefile
