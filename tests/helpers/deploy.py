"""Shared by the deployment tests: paths, the Dockerfile read as data, and tools that must be installed.

A missing tool fails the test with the package to install; nothing is skipped.
"""

from __future__ import annotations

import importlib
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
CHART = REPO / "helm" / "mfa-gateway"
# In a container the gateway binds every interface; the tests assert exactly that.
ALL_INTERFACES = "0.0.0.0"  # noqa: S104


def require_module(module: str, package: str) -> ModuleType:
    """Import a test tool, or fail naming the package (all of them are in the project's test extras)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        pytest.fail(
            f"{module} is not installed: pip install {package} (or make test, which installs the test extras)",
            pytrace=False,
        )


@dataclass
class Instruction:
    keyword: str
    arguments: str
    flags: dict[str, str] = field(default_factory=dict)

    def exec_form(self) -> list[str]:
        """The JSON array of an exec-form instruction (ENTRYPOINT, CMD, HEALTHCHECK ... CMD, VOLUME)."""
        text = self.arguments.removeprefix("CMD").strip() if self.keyword == "HEALTHCHECK" else self.arguments
        value = json.loads(text)
        assert isinstance(value, list), f"{self.keyword} is not in exec form: {self.arguments}"
        return [str(item) for item in value]


@dataclass
class Stage:
    image: str
    name: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"stage {self.name} has no {keyword}"
        return found[-1]


@dataclass
class Dockerfile:
    args: dict[str, str]
    stages: list[Stage]
    comments: list[str]

    def stage(self, name: str) -> Stage:
        return next(stage for stage in self.stages if stage.name == name)

    @property
    def final(self) -> Stage:
        return self.stages[-1]


_FLAG = re.compile(r"--(?P<name>[a-z-]+)=(?P<value>\S+)\s+")


def parse_dockerfile(path: Path = DOCKERFILE) -> Dockerfile:
    """Enough of the Dockerfile syntax for our own file: continuation lines, comments, stages, --flags."""
    logical: list[str] = []
    comments: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if stripped.startswith("#"):
            comments.append(stripped)
            continue
        if not stripped and not pending:
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        flags = {}
        while match := _FLAG.match(rest):
            flags[match["name"]] = match["value"]
            rest = rest[match.end() :]
        if keyword == "FROM":
            words = shlex.split(rest)
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(words[0], name))
        elif keyword == "ARG" and not stages:
            key, _, value = rest.partition("=")
            args[key] = value
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append(Instruction(keyword, rest, flags))
    return Dockerfile(args, stages, comments)


def image_of(stage: Stage, dockerfile: Dockerfile) -> str:
    """The stage's base image with global ARG defaults substituted."""
    return re.sub(r"\$\{(\w+)\}", lambda m: dockerfile.args[m[1]], stage.image)
