"""The `webauthn` section: the relying party the gateway will be, and the origins and ids a browser would refuse.

An explicit origin or relying party id a browser would never sign for is a config error naming the key (exit 2 at
start and in check-config); a `public_url` that cannot be a WebAuthn origin leaves WebAuthn off rather than failing a
file that was valid before.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from mfa_gateway.cli import main
from mfa_gateway.config import ConfigError
from mfa_gateway.config.webauthn import relying_party
from tests.helpers.gateway import base_config, make_settings, write_config
from tests.helpers.support import merge_overrides


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"webauthn": {"origins": ["http://app.example.com"]}}, "webauthn.origins.0: 'http://app.example.com' must "),
        ({"webauthn": {"origins": ["http://localhost:9090"]}}, "webauthn.origins.0: 'http://localhost:9090' must be"),
        ({"webauthn": {"origins": ["https://10.0.0.5"]}}, "webauthn.origins.0: 'https://10.0.0.5' is an IP address"),
        ({"webauthn": {"origins": ["https://app.example.com/login"]}}, "webauthn.origins.0: "),
        ({"webauthn": {"origins": ["app.example.com"]}}, "webauthn.origins.0: 'app.example.com' must be https://"),
        (
            {"webauthn": {"origins": ["https://app.example.com"], "rp_id": "other.example"}},
            "webauthn.rp_id: https://app.example.com is neither other.example nor a subdomain of it",
        ),
        (
            {"webauthn": {"origins": ["https://app.example.com"], "rp_id": "ple.com"}},
            "webauthn.rp_id: https://app.example.com is neither ple.com",
        ),
        (
            {"webauthn": {"origins": ["https://app.example.com"], "rp_id": "com"}},
            "webauthn.rp_id: 'com' is a top-level",
        ),
        ({"webauthn": {"origins": ["https://app.example.com"], "rp_id": "Example.com"}}, "webauthn.rp_id: must be a"),
        (
            {"webauthn": {"origins": ["https://a.example.com", "https://b.example.com"]}},
            "webauthn.rp_id: https://b.example.com is neither a.example.com",
        ),
        ({"webauthn": {"timeout": 300, "challenge_ttl": 120}}, "webauthn.challenge_ttl: must be at least"),
    ],
)
def test_check_config_refuses_what_browsers_would_refuse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], overrides: dict[str, Any], problem: str
) -> None:
    """An origin that is not https (outside a localhost demo), an IP or a URL with a path, or a relying party id that
    is not the origins' host or a parent domain of it, stops check-config with exit 2 and a line naming the key."""
    path = write_config(tmp_path, merge_overrides(base_config(tmp_path), overrides))
    assert main(["check-config", "--config", str(path)]) == 2
    assert problem in capsys.readouterr().err


def test_a_parent_domain_serves_several_origins(tmp_path: Path) -> None:
    """rp_id example.com serves app.example.com and login.example.com (ports kept, default ports dropped, lower
    case): the origins are written as browsers write them into clientDataJSON."""
    settings = make_settings(
        tmp_path,
        {
            "webauthn": {
                "origins": ["https://APP.example.com:443/", "https://login.example.com:8443"],
                "rp_id": "example.com",
                "rp_name": "Example Corp",
                "user_verification": "required",
            }
        },
    )
    rp = relying_party(settings)
    assert rp is not None
    assert rp.origins == ("https://app.example.com", "https://login.example.com:8443")
    assert (rp.rp_id, rp.name, rp.require_uv) == ("example.com", "Example Corp", True)


def test_defaults_come_from_the_public_url(tmp_path: Path) -> None:
    """With no origins, an https public_url on a domain name is the origin and its host the relying party id; the
    name is totp.issuer."""
    settings = make_settings(tmp_path, {"public_url": "https://gate.example.com", "totp": {"issuer": "Example"}})
    rp = relying_party(settings)
    assert rp is not None
    assert (rp.rp_id, rp.origins, rp.name) == ("gate.example.com", ("https://gate.example.com",), "Example")
    assert (rp.user_verification, rp.attestation, rp.max_credentials) == ("preferred", "none", 10)


def test_a_public_url_on_an_ip_address_leaves_webauthn_off_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A config valid before WebAuthn existed stays valid: a public_url that cannot be a WebAuthn origin (an IP
    address) turns WebAuthn off and says so, naming webauthn.origins."""
    with caplog.at_level(logging.WARNING, "mfa_gateway.config"):
        settings = make_settings(tmp_path, {"public_url": "https://10.1.2.3"})
    assert relying_party(settings) is None
    assert any("webauthn.origins" in record.getMessage() for record in caplog.records)


def test_no_origin_or_disabled_means_off(tmp_path: Path) -> None:
    """Without origins or public_url WebAuthn is off; enabled: false turns it off even with origins, and its
    origins are then not judged."""
    assert relying_party(make_settings(tmp_path)) is None
    off = {"webauthn": {"enabled": False, "origins": ["http://nowhere.example"]}}
    assert relying_party(make_settings(tmp_path, off)) is None


def test_plain_http_localhost_is_for_the_demo_only(tmp_path: Path) -> None:
    """http://localhost:PORT is a secure context to browsers: accepted with mode: demo (rp_id localhost)."""
    demo = {"mode": "demo", "session": {"secure": False, "cookie_name": "mfa_session"}}
    settings = make_settings(tmp_path, {**demo, "webauthn": {"origins": ["http://localhost:9090"]}})
    rp = relying_party(settings)
    assert rp is not None and (rp.rp_id, rp.origins) == ("localhost", ("http://localhost:9090",))
    with pytest.raises(ConfigError):
        make_settings(tmp_path, {"webauthn": {"origins": ["http://localhost:9090"]}})


ORIGIN = "https://app.example.com"
ADMIN_KEY = {"name": "admin", "path": "^/admin(/|$)", "action": "mfa", "phishing_resistant": True}
APP = {"name": "app", "path": "^/", "action": "mfa"}


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        (
            {"policy": {"rules": [APP, {**ADMIN_KEY, "action": "identity"}]}, "webauthn": {"origins": [ORIGIN]}},
            "policy.rules: rule #1 ('admin'): phishing_resistant only applies to 'mfa' rules (this one is 'identity')",
        ),
        (
            {"policy": {"rules": [{**ADMIN_KEY, "action": "bypass"}]}, "webauthn": {"origins": [ORIGIN]}},
            "phishing_resistant only applies to 'mfa' rules (this one is 'bypass')",
        ),
        (
            {"policy": {"rules": [APP, ADMIN_KEY]}},
            "policy.rules.1.phishing_resistant: only a security key or passkey satisfies this rule, and WebAuthn has "
            "no origin: set webauthn.origins",
        ),
        (
            {"policy": {"rules": [ADMIN_KEY]}, "webauthn": {"enabled": False, "origins": [ORIGIN]}},
            "policy.rules.0.phishing_resistant: only a security key or passkey satisfies this rule, and "
            "webauthn.enabled is false",
        ),
        (
            {"policy": {"rules": [ADMIN_KEY]}, "public_url": "https://10.1.2.3"},
            "policy.rules.0.phishing_resistant: ",
        ),
    ],
    ids=["identity-rule", "bypass-rule", "no-origin", "webauthn-disabled", "public-url-without-origin"],
)
def test_a_rule_nobody_could_pass_stops_the_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], overrides: dict[str, Any], problem: str
) -> None:
    """phishing_resistant on a rule other than mfa, or with WebAuthn off (disabled, no origin, or a public_url that
    cannot be one), stops check-config with exit 2 and a line naming the rule's key: such a rule would refuse
    everyone forever."""
    path = write_config(tmp_path, merge_overrides(base_config(tmp_path), overrides))
    assert main(["check-config", "--config", str(path)]) == 2
    assert problem in capsys.readouterr().err


def test_a_rule_demanding_a_security_key_loads_with_webauthn_on(tmp_path: Path) -> None:
    """With an origin (or an https public_url on a domain name) the rule is valid, and the compiled policy hands
    the demand to the decision; other rules demand nothing."""
    for webauthn in ({"webauthn": {"origins": [ORIGIN]}}, {"public_url": "https://gate.example.com"}):
        settings = make_settings(tmp_path, {"policy": {"rules": [ADMIN_KEY, APP]}, **webauthn})
        policy = settings.policy.compile()
        assert [rule.phishing_resistant for rule in policy.rules] == [True, False]
