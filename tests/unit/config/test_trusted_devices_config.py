"""`remember_device` on policy rules and the `trusted_devices` section: what check-config refuses, and what a valid
file compiles to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mfa_gateway.cli import main
from mfa_gateway.config import ConfigError
from mfa_gateway.core import devices
from tests.helpers.gateway import base_config, make_settings, write_config
from tests.helpers.support import merge_overrides


def _rules(*rules: dict[str, Any]) -> dict[str, Any]:
    return {"policy": {"rules": list(rules)}}


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        (_rules({"action": "identity", "remember_device": 3600}), "remember_device only applies to 'mfa' rules"),
        (_rules({"action": "bypass", "remember_device": 3600}), "remember_device only applies to 'mfa' rules"),
        (_rules({"action": "mfa", "remember_device": 7776001}), "policy.rules.0.remember_device:"),
        (_rules({"action": "mfa", "remember_device": -1}), "policy.rules.0.remember_device:"),
        (
            {
                "mode": "demo",
                "session": {"secure": False, "cookie_name": "s"},
                "trusted_devices": {"cookie_name": "__Host-d"},
            },
            "trusted_devices.cookie_name: browsers refuse __Host- cookies without Secure",
        ),
        ({"trusted_devices": {"cookie_name": "__Host-mfa_session"}}, "trusted_devices.cookie_name: must differ"),
        ({"trusted_devices": {"cookie_name": "a;b"}}, "trusted_devices.cookie_name:"),
        ({"trusted_devices": {"max_per_user": 0}}, "trusted_devices.max_per_user:"),
    ],
)
def test_check_config_refuses_devices_where_they_cannot_apply(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], overrides: dict[str, Any], problem: str
) -> None:
    """remember_device on a rule that asks for no code, beyond 90 days or negative; a __Host- device cookie without
    Secure, or one named like another of the gateway's cookies: exit 2 with a line naming the key."""
    path = write_config(tmp_path, merge_overrides(base_config(tmp_path), overrides))
    assert main(["check-config", "--config", str(path)]) == 2
    assert problem in capsys.readouterr().err


def test_a_rule_demanding_a_phishing_resistant_method_refuses_remember_device(tmp_path: Path) -> None:
    """A rule with phishing_resistant: true and remember_device is a config error naming it (a remembered device is
    never phishing-resistant); the same rule without remember_device is fine."""
    keys = {"webauthn": {"origins": ["https://app.example.com"]}}
    strict = {"name": "keys only", "action": "mfa", "phishing_resistant": True}
    with pytest.raises(ConfigError, match=r"rule #0 \('keys only'\) demands a phishing-resistant method"):
        make_settings(tmp_path, {**keys, **_rules({**strict, "remember_device": 3600})})
    make_settings(tmp_path, {**keys, **_rules(strict)})


def test_remember_device_reaches_the_compiled_rule_and_zero_is_off(tmp_path: Path) -> None:
    """A rule's remember_device is on its compiled Rule (what the pages and decide read); 0 and null are off; the
    device cookie is __Host-mfa-device, or mfa-device on a demo without Secure."""
    settings = make_settings(
        tmp_path,
        _rules(
            {"name": "app", "action": "mfa", "remember_device": 2592000},
            {"name": "zero", "action": "mfa", "remember_device": 0},
            {"name": "none", "action": "mfa"},
        ),
    )
    rules = settings.policy.compile().rules
    assert [devices.device_age(rule) for rule in rules] == [2592000.0, None, None]
    assert settings.trusted_devices.cookie(settings.session.secure) == "__Host-mfa-device"
    assert settings.trusted_devices.cookie(False) == "mfa-device"
