"""The injector's config file (``mfa-gateway injector --config FILE``, example ``config/injector.yaml``). Pure.

One frozen pydantic model, read like the gateway's (``mfa_gateway.config.injector`` loads the YAML and words the
problems: each names the key and the fix). Each field's ``x-hint`` is the short "expected …" that follows an error.
The image is the injector's alone: a pod's annotations never choose it.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from mfa_gateway.k8s.injection import DNS_SUBDOMAIN, QUANTITY, InjectorSettings

_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")  # RFC 1035, what a Service name must be
_IMAGE = re.compile(r"^[^\s:/@][^\s]*$")


def _hint(text: str) -> dict[str, Any]:
    return {"x-hint": text}


def _quantity(value: str) -> str:
    if not QUANTITY.match(value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity; write e.g. 100m (CPU) or 192Mi (memory)")
    return value


def _object_name(value: str) -> str:
    if len(value) > 253 or not DNS_SUBDOMAIN.match(value):
        raise ValueError(f"{value!r} is not a Kubernetes object name (lower case letters, digits, '-' and '.')")
    return value


def _service_name(value: str) -> str:
    if not _DNS_LABEL.match(value):
        raise ValueError(f"{value!r} is not a Service name (lower case letters, digits and '-', 63 at most)")
    return value


Quantity = Annotated[str, AfterValidator(_quantity)]
ObjectName = Annotated[str, AfterValidator(_object_name)]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Listen(_Section):
    """The one HTTPS port: /mutate, /healthz and /readyz."""

    host: str = Field(
        "0.0.0.0",  # noqa: S104  # the API server reaches the webhook through its Service: every interface
        description="Address to bind.",
        json_schema_extra=_hint("an address, e.g. 0.0.0.0"),
    )
    port: int = Field(8443, ge=1, le=65535, json_schema_extra=_hint("a TCP port between 1 and 65535"))


class Requests(_Section):
    cpu: Quantity | None = Field("100m", json_schema_extra=_hint("a CPU quantity such as 100m"))
    memory: Quantity | None = Field("192Mi", json_schema_extra=_hint("a memory quantity such as 192Mi"))


class Limits(_Section):
    cpu: Quantity | None = Field(None, json_schema_extra=_hint("a CPU quantity such as 500m"))
    memory: Quantity | None = Field("512Mi", json_schema_extra=_hint("a memory quantity such as 512Mi"))


class Resources(_Section):
    """The gateway container's resources (a pod's ``cpu`` and ``memory`` annotations override the requests)."""

    requests: Requests = Requests()
    limits: Limits = Limits()

    def as_dict(self) -> dict[str, Any]:
        """As a container's ``resources``: the quantities given, an empty side left out."""
        sides = {
            "requests": self.requests.model_dump(exclude_none=True),
            "limits": self.limits.model_dump(exclude_none=True),
        }
        return {side: values for side, values in sides.items() if values}


class Generate(_Section):
    """The injector makes its own CA and serving certificate, keeps them in a Secret and patches the CA into the
    webhook configuration (it then needs the Kubernetes API: see docs/security/kubernetes.md for the RBAC)."""

    secret: ObjectName = Field(json_schema_extra=_hint("the Secret (in the injector's namespace) to keep them in"))
    service: Annotated[str, AfterValidator(_service_name)] = Field(
        json_schema_extra=_hint("the injector's Service, whose DNS names the certificate carries")
    )
    webhook: ObjectName = Field(json_schema_extra=_hint("the MutatingWebhookConfiguration whose caBundle to patch"))


class Tls(_Section):
    """Exactly one of ``cert_file`` + ``key_file`` (reloaded when they change) or ``generate``."""

    cert_file: str | None = Field(None, min_length=1, json_schema_extra=_hint("a PEM certificate (chain) file"))
    key_file: str | None = Field(None, min_length=1, json_schema_extra=_hint("its PEM private key file"))
    generate: Generate | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Tls:
        files = (self.cert_file, self.key_file)
        if self.generate is not None and any(files):
            raise ValueError("cert_file/key_file and generate exclude each other; keep one")
        if self.generate is None and not all(files):
            missing = "key_file" if self.cert_file else "cert_file" if self.key_file else "cert_file and key_file"
            raise ValueError(f"{missing} missing")
        return self


class InjectorConfig(_Section):
    """The whole file."""

    listen: Listen = Listen()
    image: str = Field(
        min_length=1,
        pattern=_IMAGE.pattern,
        json_schema_extra=_hint("the gateway image, e.g. registry.example/mfa-gateway:0.2.0"),
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", json_schema_extra=_hint("one of Always, IfNotPresent, Never")
    )
    native_sidecar: bool = Field(
        False, json_schema_extra=_hint("true for an init container with restartPolicy: Always (Kubernetes 1.29+)")
    )
    resources: Resources = Resources()
    tls: Tls = Field(
        json_schema_extra=_hint(
            "cert_file and key_file (e.g. mounted from a cert-manager Secret), or generate: {secret, service, "
            "webhook} to have the injector make its own"
        )
    )

    def injection(self) -> InjectorSettings:
        """What :func:`mfa_gateway.k8s.injection.inject` needs."""
        return InjectorSettings(
            image=self.image,
            resources=self.resources.as_dict(),
            native_sidecar=self.native_sidecar,
            image_pull_policy=self.image_pull_policy,
        )
