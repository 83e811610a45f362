"""``mfa-gateway injector --config FILE`` as a process: it serves a review over HTTPS, stops on SIGTERM, and a bad
config stops it with exit 2 naming the key.

File mode (a certificate from a throwaway CA); the client verifies it against that CA. No API server runs here.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import yaml

from tests.helpers.certificates import TestCA
from tests.helpers.servers import on_a_free_port, start_listening

CLI = [sys.executable, "-m", "mfa_gateway", "injector"]
REVIEW = Path(__file__).resolve().parents[1] / "unit" / "k8s" / "reviews" / "plain-pod.review.json"
IMAGE = "registry.example/mfa-gateway:0.9.0"


def test_the_injector_serves_a_review_over_https_and_stops_on_sigterm(tmp_path: Path) -> None:
    """The command loads its config and certificate, answers one AdmissionReview over TLS verified against the
    CA with a patch, logs one JSON line for it, and exits 0 on SIGTERM."""
    ca = TestCA()
    ca.serving().write(tmp_path / "tls")
    config, log = tmp_path / "injector.yaml", tmp_path / "injector.log"

    def start(port: int) -> tuple[subprocess.Popen[bytes], int]:
        document = {
            "listen": {"host": "127.0.0.1", "port": port},
            "image": IMAGE,
            "tls": {"cert_file": "tls/tls.crt", "key_file": "tls/tls.key"},  # relative to the config file
        }
        config.write_text(yaml.safe_dump(document))
        return start_listening([*CLI, "--config", str(config)], [port], log), port

    process, port = on_a_free_port(start)
    try:
        request = urllib.request.Request(
            f"https://127.0.0.1:{port}/mutate",
            data=REVIEW.read_bytes(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        context = ssl.create_default_context(cadata=ca.pem.decode("ascii"))
        with urllib.request.urlopen(request, context=context, timeout=30) as answer:  # noqa: S310 - https, fixed URL
            assert answer.status == 200
            response = json.loads(answer.read())["response"]
        assert (response["allowed"], response["patchType"]) == (True, "JSONPatch")
    finally:
        process.terminate()
        code = process.wait(timeout=30)
    assert code == 0, log.read_text()
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    reviews = [line for line in lines if line.get("message") == "admission review: injected"]
    assert [(r["uid"], r["namespace"], r["kind"], r["pod"]) for r in reviews] == [
        ("7f0c2a9e-1b3d-4c5e-8f60-000000000001", "shop", "Pod", "legacy-5d8f7c9b4-*")
    ]


def test_a_bad_config_exits_2_naming_the_keys(tmp_path: Path) -> None:
    """A config without an image and with half a certificate pair: exit 2, one line per problem naming its key,
    no traceback, nothing served."""
    config = tmp_path / "injector.yaml"
    config.write_text(yaml.safe_dump({"listen": {"port": 8443}, "tls": {"cert_file": "tls.crt"}}))
    done = subprocess.run([*CLI, "--config", str(config)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        "mfa-gateway: invalid configuration:",
        "  - image: required; the gateway image, e.g. registry.example/mfa-gateway:0.2.0",
        "  - tls: key_file missing; expected cert_file and key_file (e.g. mounted from a cert-manager Secret), or "
        "generate: {secret, service, webhook} to have the injector make its own",
    ]
