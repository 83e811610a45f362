"""The injector's config file: the shipped example is valid, the defaults are the contract's, and every problem is
one line naming the key and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mfa_gateway.config import ConfigError
from mfa_gateway.config.injector import load_injector_config
from mfa_gateway.k8s.injection import InjectorSettings
from mfa_gateway.k8s.injector_config import InjectorConfig

EXAMPLE = Path(__file__).resolve().parents[3] / "config" / "injector.yaml"
FILES = {"cert_file": "/tls/tls.crt", "key_file": "/tls/tls.key"}
GENERATE = {"secret": "mfa-gateway-injector-tls", "service": "mfa-gateway-injector", "webhook": "mfa-gateway-injector"}


def problems(tmp_path: Path, document: Any) -> list[str]:
    path = tmp_path / "injector.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(ConfigError) as raised:
        load_injector_config(path)
    return raised.value.problems


def test_the_shipped_example_is_valid_and_says_the_defaults() -> None:
    """config/injector.yaml loads; apart from the image and tls (which have no default) it states the defaults,
    so the example and the model cannot drift apart."""
    config = load_injector_config(EXAMPLE)
    minimal = InjectorConfig.model_validate({"image": config.image, "tls": FILES})
    assert config.model_dump(exclude={"tls"}) == minimal.model_dump(exclude={"tls"})
    assert config.tls.cert_file == "/etc/mfa-gateway-injector/tls/tls.crt"
    assert "# generate:" in EXAMPLE.read_text()
    commented = yaml.safe_load(EXAMPLE.read_text().replace("  # generate:", "  generate:").replace("  #   ", "    "))
    commented["tls"] = {"generate": commented["tls"]["generate"]}
    assert InjectorConfig.model_validate(commented).tls.generate is not None


def test_the_defaults_are_the_contracts() -> None:
    """listen 0.0.0.0:8443, IfNotPresent, not a native sidecar, requests 100m/192Mi and a 512Mi memory limit."""
    config = InjectorConfig.model_validate({"image": "registry.example/mfa-gateway:0.2.0", "tls": FILES})
    assert (config.listen.host, config.listen.port) == ("0.0.0.0", 8443)  # noqa: S104 - the contract's default
    assert config.injection() == InjectorSettings(
        image="registry.example/mfa-gateway:0.2.0",
        resources={"requests": {"cpu": "100m", "memory": "192Mi"}, "limits": {"memory": "512Mi"}},
        native_sidecar=False,
        image_pull_policy="IfNotPresent",
    )


def test_resources_given_replace_the_defaults_key_by_key() -> None:
    """A request given replaces that request only; a CPU limit may be added."""
    config = InjectorConfig.model_validate(
        {"image": "i:1", "tls": FILES, "resources": {"requests": {"cpu": "50m"}, "limits": {"cpu": "1"}}}
    )
    assert config.injection().resources == {
        "requests": {"cpu": "50m", "memory": "192Mi"},
        "limits": {"cpu": "1", "memory": "512Mi"},
    }


def test_relative_certificate_paths_resolve_against_the_files_folder(tmp_path: Path) -> None:
    """As in the gateway's file, a relative path is relative to the config file's folder."""
    path = tmp_path / "injector.yaml"
    path.write_text(yaml.safe_dump({"image": "i:1", "tls": {"cert_file": "tls/tls.crt", "key_file": "tls/tls.key"}}))
    config = load_injector_config(path)
    assert (config.tls.cert_file, config.tls.key_file) == (str(tmp_path / "tls/tls.crt"), str(tmp_path / "tls/tls.key"))


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"tls": FILES}, ["image: required; the gateway image, e.g. registry.example/mfa-gateway:0.2.0"]),
        ({"image": "i:1"}, ["tls: required; cert_file and key_file (e.g. mounted from a cert-manager Secret), or "
                            "generate: {secret, service, webhook} to have the injector make its own"]),
        ({"image": "i:1", "tls": {"cert_file": "a"}}, ["tls: key_file missing; expected cert_file and key_file"]),
        ({"image": "i:1", "tls": {**FILES, "generate": GENERATE}},
         ["tls: cert_file/key_file and generate exclude each other; keep one"]),
        ({"image": "i:1", "tls": {"generate": {**GENERATE, "service": "a.b"}}},
         ["tls.generate.service: 'a.b' is not a Service name"]),
        ({"image": "i:1", "tls": {"generate": {"secret": "s", "webhook": "w"}}}, ["tls.generate.service: required"]),
        ({"image": "has space:1", "tls": FILES}, ["image: has the wrong form; expected the gateway image"]),
        ({"image": "i:1", "tls": FILES, "image_pull_policy": "Sometimes"}, ["image_pull_policy: "]),
        ({"image": "i:1", "tls": FILES, "listen": {"port": 0}}, ["listen.port: "]),
        ({"image": "i:1", "tls": FILES, "resources": {"limits": {"memory": "lots"}}},
         ["resources.limits.memory: 'lots' is not a Kubernetes quantity; write e.g. 100m (CPU) or 192Mi (memory)"]),
        ({"image": "i:1", "tls": FILES, "webhook": "x"},
         ["webhook: unknown key; remove it or check its spelling (see config/injector.yaml for the keys of this "
          "section)"]),
        ({"image": "i:1", "tls": FILES, "listen": {"hots": "::"}}, ["listen.hots: unknown key; remove it or "
                                                                        "check its spelling (did you mean host?)"]),
    ],
)  # fmt: skip
def test_each_problem_is_one_line_naming_the_key_and_the_fix(
    tmp_path: Path, document: dict[str, Any], expected: list[str]
) -> None:
    """A missing image or tls, half a certificate pair, both tls sources, a bad name, policy, port or quantity and
    an unknown key: one line each, starting with the key, saying what to write."""
    found = problems(tmp_path, document)
    assert len(found) == len(expected), found
    for line, start in zip(found, expected, strict=True):
        assert line.startswith(start), line


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    """Several mistakes in one file: all of them, in one error."""
    found = problems(tmp_path, {"listen": {"port": 70000}, "image": "", "tls": {"cert_file": "a"}, "extra": 1})
    assert [line.split(":")[0] for line in found] == ["listen.port", "image", "tls", "extra"]


@pytest.mark.parametrize(("text", "expected"), [("- a list\n", "must hold a mapping"), ("a: [\n", "is not valid YAML")])
def test_a_file_that_is_not_a_mapping_is_refused_naming_the_file(tmp_path: Path, text: str, expected: str) -> None:
    """Not YAML, or not a mapping: one line naming the file (and the example, for a mapping)."""
    path = tmp_path / "injector.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_injector_config(path)
    assert str(path) in raised.value.problems[0] and expected in raised.value.problems[0]
