"""``mfa-gateway inject -f``: the sidecar injection applied offline to a multi-document YAML manifest.

For GitOps without the webhook (like ``istioctl kube-inject``): every Pod, Deployment, StatefulSet, DaemonSet, Job and
CronJob whose pod template opts in (the label ``mfa-gateway.io/inject: "true"``, as for the webhook) gets the gateway;
every other document is copied byte for byte. One refused workload and nothing is written: exit 2 names each object
and why.
"""

from __future__ import annotations

import argparse
import itertools
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from mfa_gateway.cli.common import EXIT_CONFIG, Commands, add_command
from mfa_gateway.k8s.injection import InjectorSettings, Refused, inject

TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": (),
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}
"""Where each workload kind keeps its pod (template): what :func:`inject` is handed."""

_SEPARATOR = re.compile(r"^---(?=[ \t]|$)", re.MULTILINE)


def register(commands: Commands) -> None:
    command = add_command(
        commands,
        "inject",
        'add the gateway sidecar to the workloads of a manifest whose pods are labelled mfa-gateway.io/inject: "true"',
        """
mfa-gateway inject -f app.yaml --image registry.example/mfa-gateway:0.9.0 -o app.injected.yaml
mfa-gateway inject -f app.yaml --image registry.example/mfa-gateway:0.9.0 --native-sidecar | kubectl apply -f -
""",
    )
    command.add_argument("-f", "--filename", type=Path, required=True, metavar="FILE", help="the manifest to read")
    command.add_argument("-o", "--output", type=Path, metavar="FILE", help="where to write it (default: stdout)")
    command.add_argument("--image", required=True, help="the gateway image (the pods' annotations never choose it)")
    command.add_argument(
        "--native-sidecar",
        action="store_true",
        help="inject an init container with restartPolicy: Always (Kubernetes 1.29+) instead of a container",
    )
    command.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    settings = InjectorSettings(image=args.image, native_sidecar=args.native_sidecar)
    try:
        text = args.filename.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"mfa-gateway: cannot read {args.filename}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    output, problems = inject_manifest(text, settings)
    if problems:
        for problem in problems:
            print(f"mfa-gateway: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    if args.output is None:
        sys.stdout.write(output)
    else:
        args.output.write_text(output, encoding="utf-8")
    return 0


def inject_manifest(text: str, settings: InjectorSettings) -> tuple[str, list[str]]:
    """The manifest with every opted-in workload injected (the other documents as written), and the refusals."""
    chunks, problems = [], []
    for chunk in _documents(text):
        try:
            document = yaml.safe_load(chunk)
        except yaml.YAMLError as exc:
            problems.append(f"a document is not valid YAML: {exc}")
            continue
        injected = _inject_document(document, settings)
        if isinstance(injected, str):
            problems.append(injected)
        elif injected is None:
            chunks.append(chunk)
        else:
            chunks.append(_with_separator(chunk) + yaml.safe_dump(injected, sort_keys=False))
    return "".join(chunks), problems


def _documents(text: str) -> Iterator[str]:
    """The documents as written, each with the ``---`` line that opens it, so that joining them gives ``text``."""
    starts = [match.start() for match in _SEPARATOR.finditer(text) if match.start() > 0]
    bounds = [0, *starts, len(text)]
    for start, end in itertools.pairwise(bounds):
        if start < end:
            yield text[start:end]


def _with_separator(chunk: str) -> str:
    """The chunk's opening ``---`` line and the comments before the document, kept when the document is rewritten."""
    kept = []
    for line in chunk.splitlines(keepends=True):
        if not (_SEPARATOR.match(line) or line.lstrip().startswith("#") or not line.strip()):
            break
        kept.append(line if line.endswith("\n") else line + "\n")
    return "".join(kept)


def _inject_document(document: Any, settings: InjectorSettings) -> dict[str, Any] | str | None:
    """The injected document, a refusal naming the object, or None: leave the document as written."""
    if not isinstance(document, dict) or document.get("kind") not in TEMPLATE_PATHS:
        return None
    path = TEMPLATE_PATHS[document["kind"]]
    holder = _at(document, path)
    if holder is None:
        return f"{_name(document)}: no pod template at {'.'.join(path)}"
    outcome = inject(holder, settings)
    if isinstance(outcome, Refused):
        return f"{_name(document)}: injection refused: {outcome.message}"
    if not outcome.changed:
        return None
    if not path:
        return outcome.result
    parent = _at(document, path[:-1])
    assert parent is not None  # _at found the holder under it
    parent[path[-1]] = outcome.result
    return document


def _at(document: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any] | None:
    node: Any = document
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def _name(document: dict[str, Any]) -> str:
    metadata = document.get("metadata")
    if not isinstance(metadata, dict):
        metadata = {}
    namespace = f" in namespace {metadata['namespace']}" if metadata.get("namespace") else ""
    return f"{document.get('kind')}/{metadata.get('name', '<unnamed>')}{namespace}"
