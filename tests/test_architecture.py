"""Layering rules that keep the core pure and the framework in one place."""

from __future__ import annotations

import ast
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
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
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


def test_aiohttp_is_imported_only_by_the_web_layer_and_the_cli() -> None:
    """aiohttp lives in mfa_gateway.web (and the CLI, which starts it); services and adapters never see it.

    demo_app.py is exempt: it is the bundled legacy application the demo puts *behind* the gateway, not a part of it.
    """
    exempt = {"cli.py", "demo_app.py"}
    outside = [p for p in sorted(PACKAGE.rglob("*.py")) if p.parent.name != "web" and p.name not in exempt]
    assert _offending(outside, ("aiohttp",)) == []


def test_adapters_import_only_core_and_ports() -> None:
    """Adapters depend inward only: on core and the ports, never on services or the web layer."""
    adapters = sorted((PACKAGE / "adapters").rglob("*.py"))
    assert (
        _offending(adapters, ("mfa_gateway.service", "mfa_gateway.web", "mfa_gateway.runtime", "mfa_gateway.config"))
        == []
    )
