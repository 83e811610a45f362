"""``awssm:`` secrets: AWS Secrets Manager, through boto3's default credential chain (IRSA, instance profile, env).

A reference without ``?stage=`` or ``?version_id=`` follows ``AWSCURRENT``, and ``previous()`` reads ``AWSPREVIOUS``
too: with the alternating-users rotation strategy the database may still accept the previous password for a while,
so a caller whose login fails with the current one tries the previous one.

The change check is ``DescribeSecret``: its ``VersionIdsToStages`` says which version holds the label, without the
value (and without a ``kms:Decrypt``). botocore retries are kept small (the cache has its own schedule and backoff)
and timeouts short, so a slow AWS endpoint delays one refresh, not the gateway.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
import botocore.exceptions
from botocore.config import Config

from mfa_gateway.core.secret import Secret
from mfa_gateway.ports import Fetched, PermanentSecretError, SecretBackendError, SecretProvider, TransientSecretError
from mfa_gateway.secrets.refs import SecretRef, SecretRefError, select_field

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

CURRENT, PREVIOUS = "AWSCURRENT", "AWSPREVIOUS"

_PERMANENT_CODES = frozenset(
    {
        "ResourceNotFoundException",
        "InvalidRequestException",  # e.g. the secret is scheduled for deletion
        "InvalidParameterException",
        "DecryptionFailure",  # KMS refused: kms:Decrypt missing from the policy, or the key is disabled
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
    }
)
_TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "InternalServiceError",
        "InternalFailure",
        "ServiceUnavailable",
        "RequestTimeout",
        "ExpiredTokenException",  # the credential chain fetches fresh credentials on the next call
    }
)
_NOT_FOUND = "ResourceNotFoundException"


@dataclass(frozen=True, slots=True)
class AwsOptions:
    region: str | None = None
    """None: from the environment or profile (AWS_REGION); set it when the pod has none."""
    endpoint_url: str | None = None
    """A VPC endpoint or a test server; None: the public regional endpoint."""
    connect_timeout: float = 3.0
    read_timeout: float = 5.0
    max_attempts: int = 2


def make_client(options: AwsOptions, **credentials: Any) -> SecretsManagerClient:
    """A Secrets Manager client; ``credentials`` (aws_access_key_id …) only for tests: production uses the chain."""
    config = Config(
        connect_timeout=options.connect_timeout,
        read_timeout=options.read_timeout,
        retries={"max_attempts": options.max_attempts, "mode": "standard"},
    )
    return boto3.client(
        "secretsmanager", region_name=options.region, endpoint_url=options.endpoint_url, config=config, **credentials
    )


class AwsSecretsProvider(SecretProvider):
    """boto3 clients are thread-safe, so one client serves every worker thread."""

    def __init__(self, options: AwsOptions, *, client: SecretsManagerClient | None = None) -> None:
        self.options = options
        self.client = client if client is not None else make_client(options)

    def fetch(self, ref: SecretRef) -> Fetched:
        stage = None if ref.version_id else (ref.stage or CURRENT)
        return self._get(ref, stage=stage, version_id=ref.version_id)

    def previous(self, ref: SecretRef) -> Fetched | None:
        if ref.pinned:
            return None
        try:
            return self._get(ref, stage=PREVIOUS, version_id=None)
        except PermanentSecretError as exc:
            if exc.status == 404:  # a secret never rotated has no AWSPREVIOUS
                return None
            raise

    def current_version(self, ref: SecretRef) -> str:
        if ref.version_id:
            return ref.version_id  # a version id names one immutable value
        described = self._call(ref, "describing", lambda: self.client.describe_secret(SecretId=ref.location))
        if described.get("DeletedDate"):
            raise PermanentSecretError(f"{ref}: the secret is scheduled for deletion; restore it or point elsewhere")
        stage = ref.stage or CURRENT
        stages: Mapping[str, list[str]] = described.get("VersionIdsToStages") or {}
        for version_id, labels in stages.items():
            if stage in labels:
                return version_id
        raise PermanentSecretError(f"{ref}: no version of the secret has the staging label {stage}", status=404)

    def close(self) -> None:
        self.client.close()

    def _get(self, ref: SecretRef, *, stage: str | None, version_id: str | None) -> Fetched:
        def read() -> Any:
            if version_id:
                return self.client.get_secret_value(SecretId=ref.location, VersionId=version_id)
            return self.client.get_secret_value(SecretId=ref.location, VersionStage=stage or CURRENT)

        response = self._call(ref, "reading", read)
        text = response.get("SecretString")
        if text is None:
            raise PermanentSecretError(f"{ref}: the secret is binary (SecretBinary); store it as SecretString")
        try:
            value = select_field(text, ref.field, ref) if ref.field else text
        except SecretRefError as exc:
            raise PermanentSecretError(str(exc)) from None
        version = str(response["VersionId"])
        label = stage or f"version {version}"
        return Fetched(Secret(value), version, f"aws secrets manager {response.get('Name', ref.location)} ({label})")

    def _call(self, ref: SecretRef, what: str, operation: Any) -> Any:
        try:
            return operation()
        except botocore.exceptions.ClientError as exc:
            raise _classify_client_error(exc, f"{what} {ref}") from None
        except (botocore.exceptions.NoCredentialsError, botocore.exceptions.NoRegionError) as exc:
            raise PermanentSecretError(
                f"{what} {ref}: {type(exc).__name__}; configure AWS credentials and region"
            ) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise TransientSecretError(f"{what} {ref}: {type(exc).__name__} talking to Secrets Manager") from None


def _classify_client_error(exc: botocore.exceptions.ClientError, what: str) -> SecretBackendError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "Unknown"))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)) or None
    if code == _NOT_FOUND:
        return PermanentSecretError(f"{what}: not found (no such secret, version or staging label)", status=404)
    if code not in _TRANSIENT_CODES and (code in _PERMANENT_CODES or (status is not None and 400 <= status < 500)):
        return PermanentSecretError(f"{what}: Secrets Manager refused ({code})", status=status)
    return TransientSecretError(f"{what}: Secrets Manager failed ({code})", status=status)
