"""The AWS Secrets Manager provider against a real moto server: stages, version ids, change check, deletion."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from mfa_gateway.adapters.secrets.awssm import AwsOptions, AwsSecretsProvider, make_client
from mfa_gateway.ports import PermanentSecretError, TransientSecretError
from mfa_gateway.secrets.cache import SecretCache, SecretUnavailable
from mfa_gateway.secrets.refs import parse_ref
from tests.helpers.counting import Counting
from tests.helpers.gateway import FakeClock
from tests.helpers.leaks import LeakGuard
from tests.helpers.servers import free_port


@dataclass
class Rotated:
    """A secret rotated once, with a pending third version: one password per stage."""

    name: str
    arn: str
    passwords: dict[str, str]
    version_ids: dict[str, str]


def password_doc(password: str) -> str:
    return json.dumps({"username": "gateway", "password": password})


@pytest.fixture
def rotated(sm: Any, leaks: LeakGuard) -> Rotated:
    name = f"mfa/db-{uuid.uuid4().hex[:8]}"
    passwords = {stage: leaks.new(stage.lower()) for stage in ("AWSPREVIOUS", "AWSCURRENT", "AWSPENDING")}
    created = sm.create_secret(Name=name, SecretString=password_doc(passwords["AWSPREVIOUS"]))
    current = sm.put_secret_value(SecretId=name, SecretString=password_doc(passwords["AWSCURRENT"]))
    pending = sm.put_secret_value(
        SecretId=name, SecretString=password_doc(passwords["AWSPENDING"]), VersionStages=["AWSPENDING"]
    )
    ids = {"AWSPREVIOUS": created["VersionId"], "AWSCURRENT": current["VersionId"], "AWSPENDING": pending["VersionId"]}
    return Rotated(name, created["ARN"], passwords, ids)


@pytest.mark.parametrize("stage", ["AWSCURRENT", "AWSPREVIOUS", "AWSPENDING"])
def test_stages_read_their_version(aws: AwsSecretsProvider, rotated: Rotated, stage: str) -> None:
    """?stage= reads the version holding that label, and reports its VersionId."""
    fetched = aws.fetch(parse_ref(f"awssm:{rotated.name}?stage={stage}#password"))
    assert fetched.value.reveal() == rotated.passwords[stage]
    assert fetched.version == rotated.version_ids[stage]
    assert fetched.source == f"aws secrets manager {rotated.name} ({stage})"


def test_default_stage_version_id_and_arn(aws: AwsSecretsProvider, rotated: Rotated) -> None:
    """No option means AWSCURRENT; a version_id pins one version; an ARN works like a name; no field is the whole
    SecretString."""
    assert aws.fetch(parse_ref(f"awssm:{rotated.name}#password")).value.reveal() == rotated.passwords["AWSCURRENT"]
    pinned = parse_ref(f"awssm:{rotated.name}?version_id={rotated.version_ids['AWSPREVIOUS']}#password")
    assert aws.fetch(pinned).value.reveal() == rotated.passwords["AWSPREVIOUS"]
    assert aws.current_version(pinned) == rotated.version_ids["AWSPREVIOUS"]
    whole = aws.fetch(parse_ref(f"awssm:{rotated.arn}")).value.reveal()
    assert json.loads(whole)["password"] == rotated.passwords["AWSCURRENT"]


def test_previous_is_offered_only_for_unpinned_references(aws: AwsSecretsProvider, rotated: Rotated, sm: Any) -> None:
    """previous() reads AWSPREVIOUS for the alternating-users strategy; none for pinned refs or unrotated secrets."""
    previous = aws.previous(parse_ref(f"awssm:{rotated.name}#password"))
    assert previous is not None and previous.value.reveal() == rotated.passwords["AWSPREVIOUS"]
    assert aws.previous(parse_ref(f"awssm:{rotated.name}?stage=AWSCURRENT#password")) is None
    fresh = f"mfa/new-{uuid.uuid4().hex[:8]}"
    sm.create_secret(Name=fresh, SecretString="only-one")
    assert aws.previous(parse_ref(f"awssm:{fresh}")) is None


async def test_cache_change_check_and_alternatives(
    aws: AwsSecretsProvider, rotated: Rotated, sm: Any, clock: FakeClock, leaks: LeakGuard
) -> None:
    """DescribeSecret finds the version unchanged (no GetSecretValue); a rotation is fetched with its previous value,
    and alternatives() offers current then previous."""
    counting = Counting(aws)
    cache = SecretCache({"awssm": counting}, clock=clock, jitter=0)
    ref = cache.register(f"awssm:{rotated.name}#password")
    await cache.load_all()
    expected = [rotated.passwords["AWSCURRENT"], rotated.passwords["AWSPREVIOUS"]]
    assert [s.reveal() for s in cache.alternatives(ref)] == expected
    clock.advance(300)
    await cache.refresh_due()
    assert counting.calls == {"fetch": 1, "previous": 1, "current_version": 1}

    newest = leaks.new("pw")
    sm.put_secret_value(SecretId=rotated.name, SecretString=password_doc(newest))
    clock.advance(300)
    await cache.refresh_due()
    assert [s.reveal() for s in cache.alternatives(ref)] == [newest, rotated.passwords["AWSCURRENT"]]
    assert counting.calls["fetch"] == 2 and cache.status()[0].version != rotated.version_ids["AWSCURRENT"]


async def test_a_deleted_secret_fails_closed(
    aws: AwsSecretsProvider, rotated: Rotated, sm: Any, clock: FakeClock
) -> None:
    """A secret scheduled for deletion is refused by the change check and by reads: permanent, fail closed."""
    cache = SecretCache({"awssm": aws}, clock=clock, jitter=0)
    ref = cache.register(f"awssm:{rotated.name}#password")
    await cache.load_all()
    sm.delete_secret(SecretId=rotated.name, RecoveryWindowInDays=7)
    with pytest.raises(PermanentSecretError, match="scheduled for deletion"):
        aws.current_version(ref)
    with pytest.raises(PermanentSecretError, match="InvalidRequestException"):
        aws.fetch(ref)
    clock.advance(300)
    await cache.refresh_due()
    assert cache.status()[0].failed_closed and not cache.ready
    with pytest.raises(SecretUnavailable):
        cache.get(ref)


def test_missing_secrets_labels_and_fields_are_permanent(aws: AwsSecretsProvider, rotated: Rotated) -> None:
    """Not found, a label no version carries, and a missing field are verdicts, not outages; no value in messages."""
    with pytest.raises(PermanentSecretError, match="not found") as missing:
        aws.fetch(parse_ref("awssm:mfa/does-not-exist"))
    assert missing.value.status == 404
    with pytest.raises(PermanentSecretError, match="no version of the secret has the staging label NEXT"):
        aws.current_version(parse_ref(f"awssm:{rotated.name}?stage=NEXT"))
    with pytest.raises(PermanentSecretError, match="no field 'pass'") as field:
        aws.fetch(parse_ref(f"awssm:{rotated.name}#pass"))
    assert all(password not in str(field.value) for password in rotated.passwords.values())


def test_an_unreachable_endpoint_is_transient() -> None:
    """Connection refused is an outage: transient."""
    options = AwsOptions(region="us-east-1", endpoint_url=f"http://127.0.0.1:{free_port()}", max_attempts=1)
    provider = AwsSecretsProvider(
        options, client=make_client(options, aws_access_key_id="testing", aws_secret_access_key="testing")
    )
    with pytest.raises(TransientSecretError, match="EndpointConnectionError"):
        provider.fetch(parse_ref("awssm:mfa/db"))
    provider.close()
