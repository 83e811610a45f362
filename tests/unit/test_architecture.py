"""Layering rules that keep the core pure and the framework in one place."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import mfa_gateway

PACKAGE = Path(mfa_gateway.__file__).parent
FORBIDDEN_IN_CORE = (
    "aiohttp",
    "redis",
    "sqlalchemy",
    "alembic",
    "aiosqlite",
    "asyncpg",
    "hvac",
    "boto3",
    "botocore",
    "logging",
    "asyncio",
    "mfa_gateway.adapters",
    "mfa_gateway.web",
    "mfa_gateway.service",
)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))  # a relative import keeps its dots: never allowed
    return names


def _offending(paths: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in paths
        for name in sorted(_imports(path))
        if any(name == banned or name.startswith(banned + ".") for banned in forbidden)
    ]


def test_core_imports_no_io_framework_or_outer_layer() -> None:
    """mfa_gateway.core is pure: no network, storage, framework, logging or event loop."""
    assert _offending(sorted((PACKAGE / "core").rglob("*.py")), FORBIDDEN_IN_CORE) == []


def test_the_sidecar_injection_is_as_pure_as_the_core() -> None:
    """mfa_gateway.k8s is dicts in, dicts out, shared by the offline command and the webhook: it keeps the core's
    rule and reads no file, no YAML and no environment (its front doors do)."""
    forbidden = (*FORBIDDEN_IN_CORE, "mfa_gateway.config", "mfa_gateway.runtime", "mfa_gateway.cli")
    forbidden += ("os", "pathlib", "socket", "subprocess", "yaml")
    assert _offending(_modules("k8s"), forbidden) == []


AIOHTTP_CLIENTS = {Path("demo_app.py"), Path("adapters/kube.py")}
"""Modules outside web/ and cli/ that may import aiohttp, each for a reason:

* ``demo_app.py`` is the bundled legacy application the demo puts *behind* the gateway, not a part of it;
* ``adapters/kube.py`` is the injector's Kubernetes API client: an adapter talking HTTPS to the API server, for which
  aiohttp's *client* is the project's HTTP client (a generated Kubernetes client would be thousands of modules for five
  calls). It serves nothing: the framework side of aiohttp stays in web/.
"""


def test_aiohttp_is_imported_only_by_the_web_layer_and_the_cli() -> None:
    """aiohttp lives in mfa_gateway.web (and the CLI package, which starts it); services and adapters never see it,
    except the HTTP clients named in AIOHTTP_CLIENTS."""
    outside = [
        p
        for p in sorted(PACKAGE.rglob("*.py"))
        if p.parent.name not in ("web", "cli") and p.relative_to(PACKAGE) not in AIOHTTP_CLIENTS
    ]
    assert _offending(outside, ("aiohttp",)) == []


def test_adapters_import_only_core_and_ports() -> None:
    """Adapters depend inward only: on core, the ports and the reference grammar, never on services, the secret
    cache and sources, the composition root or the web layer."""
    adapters = sorted((PACKAGE / "adapters").rglob("*.py"))
    outer = ("mfa_gateway.service", "mfa_gateway.web", "mfa_gateway.runtime", "mfa_gateway.config")
    secrets_room = tuple(f"mfa_gateway.secrets.{p.stem}" for p in _modules("secrets") if p.stem != "refs")
    assert _offending(adapters, outer + secrets_room) == []


COMPOSITION_ROOTS = {Path("runtime/build.py"), Path("runtime/injector.py")}
"""Where adapters are constructed and wired: the gateway's root, and the injector's. The injector shares nothing with
the gateway's runtime (no store, state or secrets) and needs one adapter of its own, the in-cluster Kubernetes API
client of ``tls.generate``: a second root keeps that wiring out of the gateway's and out of the web layer."""
FILE_TOOLS = {
    "cli/__init__.py": ("mfa_gateway.adapters.users_file",),
    "cli/check_config.py": ("mfa_gateway.adapters.users_file", "mfa_gateway.adapters.audit"),
    "cli/users.py": ("mfa_gateway.adapters.users_file",),
}
"""Front doors allowed the adapter of a file they edit or probe directly, without wiring anything: ``users
add`` writes the users file, ``check-config`` reads it and asks the audit sink whether its file can be appended to."""


def _modules(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


def _imports_of_adapters(package: Path) -> list[str]:
    """Every import of mfa_gateway.adapters outside the adapters themselves, the composition roots and FILE_TOOLS."""
    found = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package)
        if relative.parts[0] == "adapters" or relative in COMPOSITION_ROOTS:
            continue
        allowed = FILE_TOOLS.get(relative.as_posix(), ())
        found += [line for line in _offending([path], ("mfa_gateway.adapters",)) if line.split()[-1] not in allowed]
    return found


def test_only_the_composition_root_imports_adapters() -> None:
    """mfa_gateway/runtime/build.py is the one place the gateway's adapters are constructed and wired, and
    runtime/injector.py the injector's (COMPOSITION_ROOTS): the web layer, the services, the secrets room and the
    other front doors ask them for what they need."""
    assert _imports_of_adapters(PACKAGE) == []


def test_the_secrets_room_imports_no_web_service_runtime_or_adapter() -> None:
    """mfa_gateway.secrets sits below the services and the composition root: the providers are handed in."""
    forbidden = ("aiohttp", "mfa_gateway.web", "mfa_gateway.service", "mfa_gateway.runtime", "mfa_gateway.adapters")
    assert _offending(_modules("secrets"), forbidden) == []


def test_the_reference_grammar_is_as_pure_as_the_core() -> None:
    """mfa_gateway.secrets.refs is what the ports and adapters import from the secrets room, so it keeps the core's
    rule: no I/O, no framework, nothing from an outer layer or the rest of its own package."""
    forbidden = (*FORBIDDEN_IN_CORE, "mfa_gateway.ports", "mfa_gateway.config", "mfa_gateway.runtime")
    forbidden += tuple(f"mfa_gateway.secrets.{p.stem}" for p in _modules("secrets") if p.stem != "refs")
    assert _offending([PACKAGE / "secrets" / "refs.py"], forbidden) == []


def test_the_web_layer_reads_secrets_through_the_runtime() -> None:
    """web/ never reaches into the secret cache or sources (readiness, status, refresh are Runtime methods)."""
    reaching = []
    for path in _modules("web"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr in ("cache", "refs", "fixed"):
                owner = node.value
                if isinstance(owner, ast.Attribute) and owner.attr == "secrets":
                    reaching.append(f"{path.relative_to(PACKAGE)}:{node.lineno} reads .secrets.{node.attr}")
    assert reaching == []
    assert _offending(_modules("web"), ("mfa_gateway.secrets.cache", "mfa_gateway.secrets.sources")) == []


def test_web_never_imports_adapters() -> None:
    """The web layer reaches storage and secret backends only through ports and services the composition root built
    (``runtime``); it never names an adapter itself."""
    assert _offending(sorted((PACKAGE / "web").rglob("*.py")), ("mfa_gateway.adapters",)) == []


def _inward_or_stdlib(name: str) -> bool:
    inward = ("mfa_gateway.core", "mfa_gateway.ports", "mfa_gateway.service")
    return name.split(".")[0] in sys.stdlib_module_names or any(
        name == allowed or name.startswith(allowed + ".") for allowed in inward
    )


def test_services_import_only_core_ports_and_the_standard_library() -> None:
    """Use cases depend inward only: on core, the ports, other services and the standard library; never on a
    framework, a driver, an adapter, the configuration, the runtime or the web layer."""
    services = sorted((PACKAGE / "service").rglob("*.py"))
    offending = [
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in services
        for name in sorted(_imports(path))
        if not _inward_or_stdlib(name)
    ]
    assert offending == []
