"""The reference grammar: what parses into what, what is refused, and that refusals say how to fix them."""

from __future__ import annotations

from pathlib import Path

import pytest

from mfa_gateway.secrets import refs as secret_refs
from mfa_gateway.secrets.refs import SecretRef, SecretRefError, TransitKeyRef, parse_ref, parse_transit

ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:mfa/db-AbCdEf"
VERSION_ID = "59cddc7a-03fd-487d-8f80-282f443dfd55"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("vault:secret/mfa/keyring#value", SecretRef("vault", "secret/mfa/keyring", "value")),
        ("vault:kv/a/b/c?version=3#k", SecretRef("vault", "kv/a/b/c", "k", version=3)),
        ("awssm:mfa/db", SecretRef("awssm", "mfa/db")),
        ("awssm:mfa/db#password", SecretRef("awssm", "mfa/db", "password")),
        ("awssm:mfa/db?stage=AWSPREVIOUS#password", SecretRef("awssm", "mfa/db", "password", stage="AWSPREVIOUS")),
        ("awssm:mfa/db?stage=AWSPENDING", SecretRef("awssm", "mfa/db", stage="AWSPENDING")),
        (f"awssm:mfa/db?version_id={VERSION_ID}", SecretRef("awssm", "mfa/db", version_id=VERSION_ID)),
        (f"awssm:{ARN}#password", SecretRef("awssm", ARN, "password")),
        (f"awssm:{ARN}?stage=AWSCURRENT", SecretRef("awssm", ARN, stage="AWSCURRENT")),
        ("file:/run/secrets/keyring.json", SecretRef("file", "/run/secrets/keyring.json")),
        ("file:db.json#password", SecretRef("file", "db.json", "password")),
    ],
)
def test_references_parse_and_print_back(text: str, expected: SecretRef) -> None:
    """Each documented form parses to its parts, and str() gives the same reference back."""
    ref = parse_ref(text)
    assert ref == expected
    assert str(ref) == text
    assert parse_ref(str(ref)) == ref


def test_vault_reference_parts() -> None:
    """A Vault reference's mount is its first segment; the rest is the path inside the mount."""
    ref = parse_ref("vault:secret/mfa/keyring?version=2#value")
    assert (ref.mount, ref.path, ref.field, ref.version, ref.pinned) == ("secret", "mfa/keyring", "value", 2, True)
    assert not parse_ref("awssm:x").pinned


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("vault:secret/mfa/keyring", "needs #<field>"),
        ("vault:secret#value", "vault:<mount>/<path>#<field>"),
        ("vault:secret/../sys#value", "vault:<mount>/<path>#<field>"),
        ("vault:secret//x#value", "vault:<mount>/<path>#<field>"),
        ("vault:secret/x?version=0#value", "version number"),
        ("vault:secret/x?version=two#value", "version number"),
        ("vault:secret/x?stage=AWSCURRENT#value", "takes ?version=N"),
        ("vault:secret/x?version=1&version=2#value", "given twice"),
        ("vault:secret/x?version#value", "?name=value"),
        ("vault:secret/x#bad field", "the field after #"),
        ("awssm:", "name or ARN"),
        ("awssm:has space", "name or ARN"),
        ("awssm:arn:aws:secretsmanager:eu-west-1:12:secret:x", "arn:aws:secretsmanager:<region>"),
        (f"awssm:mfa/db?stage=AWSCURRENT&version_id={VERSION_ID}", "not both"),
        ("awssm:mfa/db?version_id=short", "version_id must be"),
        ("awssm:mfa/db?stage=no good", "stage must be"),
        ("awssm:mfa/db?version=3", "?stage=LABEL or ?version_id=ID"),
        ("file:", "give a path"),
    ],
)
def test_malformed_references_are_refused_with_the_fix(text: str, hint: str) -> None:
    """A reference that does not parse is refused (never taken for a literal), naming the reference and the fix."""
    with pytest.raises(SecretRefError) as caught:
        parse_ref(text)
    assert hint in str(caught.value)
    assert text.split("?")[0].split("#")[0] in str(caught.value)
    with pytest.raises(SecretRefError):
        secret_refs.parse(text)


def test_transit_references_are_keys_not_values() -> None:
    """transit: parses into its own type, and is refused where a secret value is expected."""
    assert parse_transit("transit:transit/mfa-totp") == TransitKeyRef("transit", "mfa-totp")
    assert str(parse_transit("transit:transit/mfa-totp")) == "transit:transit/mfa-totp"
    for bad in ("transit:mfa-totp", "transit:a/b/c", "transit:../x", "vault:secret/x#y"):
        with pytest.raises(SecretRefError, match="transit:<mount>/<key>"):
            parse_transit(bad)
    with pytest.raises(SecretRefError, match="names an encryption key, not a secret value"):
        secret_refs.parse("transit:transit/mfa-totp")


def test_config_values_tell_references_from_literals() -> None:
    """The config-facing parse: references, env: names and literals (demo mode) are told apart as before."""
    assert secret_refs.parse("vault:secret/mfa/keyring#value").ref == SecretRef("vault", "secret/mfa/keyring", "value")
    assert secret_refs.parse("awssm:mfa/db#password").ref is not None
    assert secret_refs.parse("env:DB_PASSWORD").env_name == "DB_PASSWORD"
    literal = secret_refs.parse("hunter2:with-colon")
    assert literal.ref is None and literal.literal is not None and literal.literal.reveal() == "hunter2:with-colon"


def test_relative_file_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    """file: references become absolute; other references, and their options, pass through unchanged."""
    resolved = secret_refs.resolve_file_paths(parse_ref("file:keys/db.json#password"), tmp_path)
    assert resolved == SecretRef("file", str(tmp_path / "keys/db.json"), "password")
    vault = parse_ref("vault:secret/x?version=2#k")
    assert secret_refs.resolve_file_paths(vault, tmp_path) is vault
