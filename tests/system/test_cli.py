"""The command line: config validation with exit code 2, keygen, users, rekey, and the demo server."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from mfa_gateway import cli
from mfa_gateway.cli import main
from mfa_gateway.config import MOVED_KEYS, load_settings
from mfa_gateway.config.webauthn import relying_party
from mfa_gateway.core.keyring import Keyring
from mfa_gateway.core.tokens import SigningKeys
from tests.helpers.gateway import base_config, write_config
from tests.helpers.servers import free_port, on_a_free_port, start_listening
from tests.helpers.support import merge_overrides

CLI = [sys.executable, "-m", "mfa_gateway"]
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"limits": {"user": {"max_failures": 0}}}, "limits.user.max_failures: Input should be greater than"),
        ({"totp": {"digits": 9}}, "totp.digits"),
        ({"totp": {"algorithm": "MD5"}}, "one of SHA1, SHA256, SHA512"),
        ({"listen": {"prot": 1}}, "listen.prot: unknown key; remove it or check its spelling"),
        ({"identity": {"source": "trusted_header"}}, "trusted_proxies: identity source trusted_header needs"),
        ({"session": {"secure": False}}, "session.secure: false is only allowed with mode: demo"),
        ({"store": {"url": "mysql://x"}}, "store.url: use sqlite+aiosqlite:///PATH or postgresql+asyncpg://"),
        ({"store": {"url": "postgresql+asyncpg://u:hunter2@db/x"}}, "do not write the password into the URL"),
        ({"state": {"password": "hunter2"}}, "state.password: a literal value is refused outside mode: demo"),
        ({"state": {"password": "env:REDIS_PASSWORD"}}, "the environment variable REDIS_PASSWORD is refused"),
        ({"state": {"url": "redis://:hunter2@cache:6379/0"}}, "state.url: do not write the password into the URL"),
        ({"limits": {"user": {"lockout": 7200}}}, "limits.user: lockout must not exceed max_lockout"),
        ({"policy": {"rules": [{"path": "(", "action": "mfa"}]}}, "policy.rules"),
        ({"workers": 2}, "workers: more than one worker needs state.backend: redis"),
        ({"secrets": {"keyring": "vault:secret/mfa#keyring"}}, "secrets.vault: vault: references and transit: need"),
        (
            {"secrets": {"vault": {"address": "http://vault.example:8200", "auth": "token_file", "token_file": "t"}}},
            "secrets.vault.address: http:// would send the Vault token and secrets in clear text",
        ),
        ({"secrets": {"vault": {"address": "https://v:8200", "auth": "approle"}}}, "auth approle needs approle"),
        (
            {"secrets": {"keyring": "vault:secret/mfa", "vault": {"address": "https://v", "auth": "token_file"}}},
            "secrets.vault.token_file: auth token_file needs token_file",
        ),
        (
            {
                "secrets": {
                    "keyring": "vault:secret/mfa",
                    "vault": {"address": "https://v", "auth": "token_file", "token_file": "t"},
                }
            },
            "secrets.keyring: vault:secret/mfa",
        ),
        ({"secrets": {"cache": {"ttl": 600, "max_stale": 60}}}, "max_stale: must be at least secrets.cache.ttl"),
        ({"admin": {"port": 9090}}, "admin.port: the admin listener needs its own port"),
        ({"forward_auth": {"cache_ttl": 301}}, "forward_auth.cache_ttl: Input should be less than or equal to 300"),
        (
            {
                "forward_auth": {"cache_ttl": 10},
                "trusted_proxies": ["127.0.0.1/32"],
                "identity": {"source": "trusted_header", "header": "X-Forwarded-User"},
            },
            "forward_auth.cache_ttl: with identity.source trusted_header the decision reads a header that a proxy's",
        ),
        ({"state": {"sentinels": ["10.0.0.1:26379"]}}, "state.sentinels: give both sentinels"),
        ({"state": {"sentinel_password": "file:/run/s"}}, "state.sentinel_password: only used with state.sentinels"),
        ({"state": {"sentinel_tls": True}}, "state.sentinel_tls: only used with state.sentinels"),
        (
            {"state": {"sentinels": ["10.0.0.1:26379"], "sentinel_master": "m", "sentinel_tls": True}},
            "state.sentinel_tls: needs state.url rediss://",
        ),
        ({"state": {"url": "redis://cache:6379/0?ssl_ca_certs=/ca.pem"}}, "ssl_ca_certs only apply to rediss://"),
        ({"state": {"url": "rediss://cache:6380/0?ssl_cert_reqs=none"}}, "must keep certificate and host name checks"),
        (
            {"state": {"url": "rediss://c:6380/0?ssl_check_hostname=false"}},
            "must keep certificate and host name checks",
        ),
        ({"state": {"url": "redis://cache:6379/0?password=hunter2"}}, "state.url: do not write the password into"),
        (
            {"state": {"sentinels": ["10.0.0.1:26379"], "sentinel_master": "m", "sentinel_password": "hunter2"}},
            "state.sentinel_password: a literal value is refused outside mode: demo",
        ),
        ({"secrets": {"totp_cipher": "transit:../k"}}, "secrets.totp_cipher: transit:../k: a Transit key reference is"),
        # A password SQLAlchemy reads although urlsplit sees none (it holds / or ?), and a TLS key passphrase.
        ({"store": {"url": "postgresql+asyncpg://app:hunter2/x@db/mfa"}}, "store.url: do not write the password into"),
        ({"store": {"url": "postgresql+asyncpg://app:hunter2?x@db/mfa"}}, "store.url: do not write the password into"),
        ({"state": {"url": "redis://cache:6379/0?PASSWORD=hunter2"}}, "state.url: do not write the password into"),
        ({"state": {"url": "rediss://c:6380/0?ssl_password=hunter2"}}, "state.url: do not write a password into the"),
        ({"store": {"url": "postgresql+asyncpg://app@db:port/mfa"}}, "store.url: cannot be read as a database URL"),
        # The host is what follows the last @: this Vault is vault.example, over plain HTTP, given a login.
        (
            {"secrets": {"vault": {"address": "http://127.0.0.1:8200@vault.example", "auth": "token_file"}}},
            "secrets.vault.address: no user or password in the address",
        ),
        (
            {"secrets": {"vault": {"address": "https://root:hunter2@vault.example", "auth": "token_file"}}},
            "secrets.vault.address: no user or password in the address; Vault logs in through secrets.vault.auth",
        ),
        ({"secrets": {"vault": {"address": "https://[::1", "auth": "token_file"}}}, "secrets.vault.address:"),
        (
            {"secrets": {"vault": {"address": "https://vault.example:99999", "auth": "token_file"}}},
            "secrets.vault.address: give a host and, if any, a port 1-65535",
        ),
        (
            {"mode": "demo", "session": {"secure": False}},
            "session.cookie_name: browsers refuse __Host- cookies without Secure",
        ),
    ],
)
def test_invalid_config_names_the_key_and_the_fix_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], document: dict[str, object], expected: str
) -> None:
    """check-config on a bad file exits 2 with a line naming the key and what to do; no secret is echoed."""
    config = merge_overrides(base_config(tmp_path), document)
    assert main(["check-config", "--config", str(write_config(tmp_path, config))]) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert "hunter2" not in err


@pytest.mark.parametrize(
    ("totp", "expected"),
    [
        ({"period": 121}, "totp.period: Input should be less than or equal to 120; expected seconds per code, 15-120"),
        ({"period": 300}, "totp.period: Input should be less than or equal to 120"),
        ({"period": 14}, "totp.period: Input should be greater than or equal to 15"),
        ({"digits": 9}, "totp.digits: Input should be less than or equal to 8; expected 6, 7 or 8"),
        ({"digits": 5}, "totp.digits: Input should be greater than or equal to 6"),
        ({"algorithm": "MD5"}, "totp.algorithm: Input should be 'SHA1', 'SHA256' or 'SHA512'"),
        ({"issuer": "Acme:EU"}, "totp.issuer: must not contain ':' (authenticator labels are issuer:account"),
    ],
)
def test_totp_settings_verification_cannot_use_exit_2_at_check_config_and_serve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], totp: dict[str, object], expected: str
) -> None:
    """A TOTP period, digit count or algorithm that codes cannot be made or checked with, or an issuer that breaks the
    authenticator label, stops check-config and serve (exit 2, before listening) with a line naming the key and the
    allowed values, instead of a 500 or a garbled label at enrollment."""
    path = write_config(tmp_path, merge_overrides(base_config(tmp_path), {"totp": totp}))
    assert main(["check-config", "--config", str(path)]) == 2
    assert expected in capsys.readouterr().err
    assert main(["serve", "--config", str(path)]) == 2
    assert expected in capsys.readouterr().err


# What pydantic says about its own machinery, never about the config file.
VALIDATOR_INTERNALS = ("lax-or-strict", "function-", "should match pattern", "<class", "valid tuple", "instance of")


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            {"trusted_proxies": ["10.0.0.0/33"]},
            "trusted_proxies.0: '10.0.0.0/33' is no network; write a CIDR such as 10.0.0.0/8, 192.168.1.5/32 or "
            "fd00::/8",
        ),
        (
            {"policy": {"rules": [{"action": "mfa", "networks": ["office"]}]}},
            "policy.rules.0.networks.0: 'office' is no network; write a CIDR such as 10.0.0.0/8",
        ),
        (
            {"upstream": {"url": "ftp://app"}},
            "upstream.url: has the wrong form; expected http(s)://HOST:PORT of the app",
        ),
        ({"prefix": "mfa"}, "prefix: has the wrong form; expected a path such as /_mfa"),
        ({"log_level": "verbose"}, "log_level: Input should be 'debug', 'info', 'warning' or 'error'; expected one of"),
        ({"listen": {"port": 70000}}, "listen.port: Input should be less than or equal to 65535; expected a TCP port"),
        (
            {"listen": {"port": "http"}},
            "listen.port: should be a whole number; expected a TCP port between 1 and 65535",
        ),
        ({"upstream": {"read_timeout": "1m"}}, "upstream.read_timeout: should be a number; expected seconds"),
        ({"session": {"secure": "maybe"}}, "session.secure: should be true or false; expected true (HTTPS only)"),
        ({"totp": 30}, "totp: should be a section: a mapping of keys, one per line below it"),
        (
            {"trusted_proxies": "10.0.0.0/8"},
            "trusted_proxies: should be a list, e.g. [A, B] (one value still needs the brackets: [A])",
        ),
        ({"identity": {"users_file": ["a", "b"]}}, "identity.users_file: should be a file path; expected the builtin"),
        (
            {"secrets": {"vault": {"address": "https://v", "auth": "token_file", "token_file": "t", "timeout": 0}}},
            "secrets.vault.timeout: Input should be greater than 0; expected seconds per Vault call",
        ),
        ({"listen": {"prot": 1}}, "listen.prot: unknown key; remove it or check its spelling (did you mean port?)"),
    ],
)
def test_config_errors_speak_of_the_file_not_the_validator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], document: dict[str, object], expected: str
) -> None:
    """A wrong CIDR, URL, choice, bound, number, boolean, section or list names the key, what is wrong and the fix,
    once (an address that is neither IPv4 nor IPv6 is one problem), without the validator's internals (exit 2)."""
    config = merge_overrides(base_config(tmp_path), document)
    assert main(["check-config", "--config", str(write_config(tmp_path, config))]) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert err.count(expected.split(":")[0] + ":") == 1
    assert not [internal for internal in VALIDATOR_INTERNALS if internal in err]


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One check-config run lists every problem: invalid keys, checks across keys (on the sections that are valid)
    and refused secret values together, not one per run."""
    document = {
        "listen": {"port": 0},
        "trusted_proxies": ["10.0.0.0/33"],
        "workers": 2,
        "session": {"secure": False},
        "limits": {"user": {"lockout": 7200}},
        "state": {"password": "hunter2"},
    }
    config = merge_overrides(base_config(tmp_path), document)
    assert main(["check-config", "--config", str(write_config(tmp_path, config))]) == 2
    err = capsys.readouterr().err
    for problem in (
        "listen.port: Input should be greater than or equal to 1",
        "trusted_proxies.0: '10.0.0.0/33' is no network",
        "workers: more than one worker needs state.backend: redis",
        "session.secure: false is only allowed with mode: demo",
        "session.cookie_name: browsers refuse __Host- cookies without Secure",
        "limits.user: lockout must not exceed max_lockout",
        "state.password: a literal value is refused outside mode: demo",
    ):
        assert problem in err
    assert "hunter2" not in err


def test_every_problem_of_one_section_is_reported_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A section's own checks report together too: sentinel options without sentinels name each option."""
    state = {"sentinel_password": "file:/run/secrets/sentinel", "sentinel_tls": True}
    config = merge_overrides(base_config(tmp_path), {"state": state})
    assert main(["check-config", "--config", str(write_config(tmp_path, config))]) == 2
    err = capsys.readouterr().err
    assert "state.sentinel_password: only used with state.sentinels" in err
    assert "state.sentinel_tls: only used with state.sentinels" in err
    assert "state.sentinel_tls: needs state.url rediss://" in err


def test_a_check_across_keys_is_skipped_when_a_key_it_reads_is_invalid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A section that is itself invalid is reported once, and checks that read it stay silent rather than judge a
    value the file does not hold (state.backend redis with a bad sentinel does not also claim workers need Redis)."""
    state = {"backend": "redis", "sentinels": ["sentinel:port"], "sentinel_master": "m"}
    config = merge_overrides(base_config(tmp_path), {"workers": 2, "state": state})
    assert main(["check-config", "--config", str(write_config(tmp_path, config))]) == 2
    err = capsys.readouterr().err
    assert "state.sentinels.0: 'sentinel:port'" in err
    assert "workers:" not in err


@pytest.mark.parametrize(("old", "new"), sorted(MOVED_KEYS.items()))
def test_a_moved_key_says_where_it_lives_now(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str
) -> None:
    """A key from an older layout is refused (exit 2) with its new place, not just "unknown key"."""
    document: dict[str, object] = {}
    parent = document
    *sections, name = old.split(".")
    for section in sections:
        parent = parent.setdefault(section, {})  # type: ignore[assignment]
    parent[name] = ["10.0.0.0/8"]
    config = merge_overrides(base_config(tmp_path), document)
    assert main(["check-config", "--config", str(write_config(tmp_path, config))]) == 2
    assert f"{old}: this key has moved; write it as {new}" in capsys.readouterr().err


def test_unreadable_and_non_yaml_config_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing file or broken YAML is a config error too (exit 2), with the line number for YAML."""
    assert main(["check-config", "--config", str(tmp_path / "absent.yaml")]) == 2
    broken = tmp_path / "broken.yaml"
    broken.write_text("listen:\n  port: [1,\n")
    assert main(["check-config", "--config", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "cannot read" in err and "is not valid YAML at line" in err


def test_missing_secret_file_exits_2_naming_the_reference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A secret reference to a missing file fails check-config with the reference named."""
    config = base_config(tmp_path)
    config["secrets"] = {"keyring": "file:nope.json", "signing_keys": "file:nope2.json"}
    assert main(["check-config", "--config", str(write_config(tmp_path, config))]) == 2
    assert "nope.json" in capsys.readouterr().err


def test_malformed_users_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A users file that is not the expected YAML stops check-config and serve with exit 2."""
    (tmp_path / "users.yaml").write_text("users: [just, a, list]\n")
    assert main(["check-config", "--config", str(write_config(tmp_path, base_config(tmp_path)))]) == 2
    assert "identity.users_file" in capsys.readouterr().err


def test_ip_limits_keep_their_own_defaults(tmp_path: Path) -> None:
    """Setting one per-IP key leaves the other per-IP defaults (20 failures, no hard lock) in place."""
    from mfa_gateway.config import parse_settings

    settings = parse_settings({**base_config(tmp_path), "limits": {"ip": {"window": 600}}}, base_dir=tmp_path)
    assert (settings.limits.ip.max_failures, settings.limits.ip.hard_lock_after) == (20, 0)


def _with_vault(tmp_path: Path, address: str) -> dict[str, object]:
    vault = {"address": address, "auth": "token_file", "token_file": "token"}
    return merge_overrides(base_config(tmp_path), {"secrets": {"vault": vault}})


@pytest.mark.parametrize(
    "address",
    [
        "http://127.0.0.1:8200",
        "http://127.0.0.2:8200",  # all of 127.0.0.0/8 is loopback
        "http://localhost",
        "http://LOCALHOST:8200",  # host names are case-insensitive
        "http://[::1]:8200",
        "http://[::1]",  # no port: the scheme's default
        "http://[::ffff:127.0.0.1]:8200",  # IPv4-mapped: reaches 127.0.0.1
        "https://vault.example:8200",
    ],
)
def test_vault_over_plain_http_is_accepted_on_loopback(tmp_path: Path, address: str) -> None:
    """A Vault on this machine may be reached over http:// outside demo mode, however its loopback address is
    written; https:// anywhere."""
    from mfa_gateway.config import parse_settings

    settings = parse_settings(_with_vault(tmp_path, address), base_dir=tmp_path)
    assert settings.secrets.vault is not None and settings.secrets.vault.address == address


@pytest.mark.parametrize(
    "address",
    [
        "http://vault.example:8200",
        "http://127.0.0.1.evil.example:8200",  # a DNS name that merely starts like a loopback address
        "http://localhost.:8200",  # a trailing dot asks DNS instead of the hosts file
        "http://0.0.0.0:8200",
        "http://127.1:8200",  # shorthand ipaddress does not read: fail closed
        "http://[::2]:8200",
    ],
)
def test_vault_over_plain_http_is_refused_off_loopback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], address: str
) -> None:
    """http:// to a Vault that is not certainly on this machine is refused (exit 2) naming the key and the fix."""
    assert main(["check-config", "--config", str(write_config(tmp_path, _with_vault(tmp_path, address)))]) == 2
    assert "secrets.vault.address: http:// would send the Vault token and secrets in clear text; use https://" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize(
    ("section", "url"),
    [
        ("state", "redis://user%40corp@cache:6379/0"),  # a user name only, with an escaped @
        ("state", "rediss://mfa@cache:6380/0?ssl_ca_certs=/run/secrets/ca.pem"),
        ("state", "redis://[::1]:6379/0"),
        ("store", "postgresql+asyncpg://mfa%40corp@db:5432/mfa"),
        ("store", "postgresql+asyncpg://mfa@[::1]:5432/mfa"),
        ("store", "sqlite+aiosqlite:////data/x@y.db"),  # an @ in a path is no login
    ],
)
def test_urls_without_a_password_are_accepted(tmp_path: Path, section: str, url: str) -> None:
    """A user name, an escaped @ or an IPv6 host in a URL is no password: such URLs load unchanged."""
    from mfa_gateway.config import parse_settings

    settings = parse_settings(merge_overrides(base_config(tmp_path), {section: {"url": url}}), base_dir=tmp_path)
    assert getattr(settings, section).url == url


def test_sentinel_addresses_are_parsed_into_host_and_port(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """state.sentinels become (host, port) pairs at load: names, IPv4, [IPv6] without its brackets, and (as
    always accepted, with a warning) an unbracketed IPv6 address split at its last colon."""
    from mfa_gateway.config import parse_settings

    written = [
        "redis-sentinel-0.mfa.svc:26379",
        "sentinel.:26379",
        "10.0.0.1:06379",
        "[fd00::1]:26379",
        "[10.0.0.2]:26380",
        "::1:26381",
    ]
    state = {"backend": "redis", "sentinels": written, "sentinel_master": "mymaster"}
    settings = parse_settings(merge_overrides(base_config(tmp_path), {"state": state}), base_dir=tmp_path)
    assert settings.state.sentinels == (
        ("redis-sentinel-0.mfa.svc", 26379),
        ("sentinel.", 26379),
        ("10.0.0.1", 6379),
        ("fd00::1", 26379),
        ("10.0.0.2", 26380),
        ("::1", 26381),
    )
    assert all(type(port) is int for _, port in settings.state.sentinels)
    assert "state.sentinels: ::1:26381 is read as host ::1, port 26381; write [::1]:26381" in caplog.text


@pytest.mark.parametrize(
    "sentinel",
    [
        "10.0.0.1",
        "10.0.0.1:",
        "10.0.0.1:0",
        "10.0.0.1:65536",
        "10.0.0.1:026379",  # six digits
        "sentinel:port",
        ":26379",
        "[]:26379",
        "[::1:26379",
        "::1]:26379",
        "[zz::1]:26379",
        "a:b:26379",
        "sentinel..mfa:26379",
        "sentinel_0:26379",
        "10.0.0.1:26379 ",
    ],
)
def test_malformed_sentinel_addresses_exit_2_naming_the_key_and_the_form(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sentinel: str
) -> None:
    """A sentinel address that is not HOST:PORT or [IPV6]:PORT with a port 1-65535 stops check-config (exit 2)
    with a line naming state.sentinels, the value and the expected form."""
    state = {"backend": "redis", "sentinels": ["10.0.0.9:26379", sentinel], "sentinel_master": "mymaster"}
    config = merge_overrides(base_config(tmp_path), {"state": state})
    assert main(["check-config", "--config", str(write_config(tmp_path, config))]) == 2
    err = capsys.readouterr().err
    assert f"state.sentinels.1: {sentinel!r}" in err
    assert "write HOST:PORT or [IPV6]:PORT, e.g. redis-sentinel-0.mfa.svc:26379 or [fd00::1]:26379" in err


def test_a_sentinel_that_is_no_string_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A sentinel written as a YAML list or mapping instead of one HOST:PORT string is refused, with the form."""
    state = {"backend": "redis", "sentinels": [["10.0.0.1", 26379]], "sentinel_master": "mymaster"}
    config = merge_overrides(base_config(tmp_path), {"state": state})
    assert main(["check-config", "--config", str(write_config(tmp_path, config))]) == 2
    assert "state.sentinels.0: each sentinel is one string; write HOST:PORT or [IPV6]:PORT" in capsys.readouterr().err


def test_the_runtime_hands_the_parsed_sentinel_addresses_to_redis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Composition passes config's (host, port) pairs to the Redis state as they are: no second parse."""
    from mfa_gateway.adapters.state import redis as redis_adapter
    from mfa_gateway.adapters.state.memory import MemorySharedState
    from mfa_gateway.runtime import build as runtime
    from mfa_gateway.runtime import open_sources
    from tests.helpers.gateway import make_settings

    state = {"backend": "redis", "sentinels": ["[::1]:26379", "10.0.0.1:26380"], "sentinel_master": "mymaster"}
    settings = make_settings(tmp_path, {"state": state})
    received: list[object] = []

    def redis_state(url: str, **options: object) -> MemorySharedState:
        received.append(options["sentinels"])
        return MemorySharedState()

    monkeypatch.setattr(redis_adapter, "RedisSharedState", redis_state)  # build_state imports it on use
    sources = open_sources(settings)
    try:
        runtime.build_state(settings, sources)
    finally:
        sources.close()
    assert received == [(("::1", 26379), ("10.0.0.1", 26380))]


def test_valid_config_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """check-config on a valid file exits 0 and loads its keys."""
    assert main(["check-config", "--config", str(write_config(tmp_path, base_config(tmp_path)))]) == 0
    assert "valid" in capsys.readouterr().out


def test_example_config_is_valid(tmp_path: Path) -> None:
    """config/gateway.example.yaml validates (with its secret files provided)."""
    from mfa_gateway.config import Settings

    example = REPO / "config" / "gateway.example.yaml"
    Settings.model_validate(yaml.safe_load(example.read_text()))


def test_keygen_prints_usable_documents(capsys: pytest.CaptureFixture[str]) -> None:
    """keygen keyring / signing print JSON that loads as a keyring and as signing keys."""
    assert main(["keygen", "keyring", "--kid", "2026-11"]) == 0
    assert Keyring.from_json(capsys.readouterr().out).primary == "2026-11"
    assert main(["keygen", "signing", "--kid", "sig-1", "--alg", "ES256"]) == 0
    assert SigningKeys.from_json(capsys.readouterr().out).active.alg == "ES256"


def test_users_add_reads_the_password_and_stores_only_a_hash(tmp_path: Path) -> None:
    """users add writes an Argon2id hash (file mode 0600), never the password; short passwords are refused."""
    config = write_config(tmp_path, base_config(tmp_path))
    run = subprocess.run(
        [*CLI, "users", "add", "Carol", "--email", "c@example.test", "--config", str(config), "--password-stdin"],
        input="a long enough password\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    users_file = tmp_path / "users.yaml"
    text = users_file.read_text()
    assert "carol" in text and "$argon2id$" in text and "a long enough password" not in text
    assert users_file.stat().st_mode & 0o777 == 0o600
    short = subprocess.run(
        [*CLI, "users", "add", "dan", "--config", str(config), "--password-stdin"],
        input="short\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert short.returncode == 1 and "at least 12" in short.stderr


def test_rekey_and_users_admin_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """rekey moves enrollments to the primary key (reporting counts per key); users list/show/reset work."""
    import asyncio

    from tests.helpers.gateway import FakeClock, make_runtime, make_settings

    settings = make_settings(tmp_path)
    clock = FakeClock()

    async def enroll() -> None:
        runtime, _ = make_runtime(settings, clock)
        await runtime.store.migrate()
        from mfa_gateway.service.mfa import Caller

        await runtime.mfa.start_enrollment(Caller("erin", None))
        await runtime.close()

    asyncio.run(enroll())
    keyring_path = tmp_path / "keys" / "keyring.json"
    old = json.loads(keyring_path.read_text())
    new = json.loads(
        subprocess.run(
            [*CLI, "keygen", "keyring", "--kid", "test-2"], capture_output=True, text=True, check=True
        ).stdout
    )
    old["keys"][0]["status"] = "decrypt-only"
    keyring_path.write_text(json.dumps({"primary": "test-2", "keys": old["keys"] + new["keys"]}))
    config = write_config(
        tmp_path,
        {
            **base_config(tmp_path),
            "secrets": {
                "keyring": f"file:{keyring_path}",
                "signing_keys": f"file:{tmp_path / 'keys' / 'signing.json'}",
            },
        },
    )
    assert main(["rekey", "--config", str(config)]) == 0
    assert "re-encrypted 1 from key test-1 to test-2" in capsys.readouterr().out
    assert main(["rekey", "--config", str(config)]) == 0
    assert "already under key test-2" in capsys.readouterr().out
    assert main(["users", "list", "--config", str(config)]) == 0
    assert "erin\tpending" in capsys.readouterr().out
    assert main(["users", "show", "ERIN", "--config", str(config)]) == 0
    assert "key test-2" in capsys.readouterr().out
    # memory state and no gateway running to reach: the enrollment goes, and exit 1 says the sessions could not
    assert main(["users", "reset", "erin", "--config", str(config)]) == 1
    assert "enrollment deleted" in capsys.readouterr().out
    assert main(["users", "show", "erin", "--config", str(config)]) == 1


def test_demo_starts_on_embedded_defaults_and_answers_healthz(tmp_path: Path) -> None:
    """`mfa-gateway demo` makes its keys and data on first run, prints the URL and credentials, serves healthz,
    proxies the bundled app's public page and holds /admin back until sign-in."""

    def start(port: int) -> tuple[subprocess.Popen[bytes], int]:
        app_port = free_port()
        command = [*CLI, "demo", "--data-dir", str(tmp_path / "demo"), "--port", str(port), "--app-port", str(app_port)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        return start_listening(command, [app_port, port], tmp_path / "demo.log", env=env), port

    process, port = on_a_free_port(start)
    base = f"http://127.0.0.1:{port}"
    try:
        with urllib.request.urlopen(base + "/_mfa/healthz", timeout=5) as response:  # noqa: S310
            assert json.load(response) == {"status": "ok"}
        with urllib.request.urlopen(base + "/public", timeout=5) as response:  # noqa: S310
            assert b"Public page" in response.read()
        request = urllib.request.Request(base + "/admin", headers={"Accept": "application/json"})  # noqa: S310
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)  # noqa: S310
        refused.value.close()
        assert refused.value.code == 401 and refused.value.headers["Location"] == "/login?next=%2Fadmin"
    finally:
        process.terminate()
        process.wait(timeout=10)
    output = (tmp_path / "demo.log").read_text()
    password = (tmp_path / "demo" / "demo-password.txt").read_text().strip()
    assert f"user demo   password {password}" in output and f"http://localhost:{port}/admin" in output
    # opened as localhost, the demo is a WebAuthn relying party: security keys and passkeys work there too
    party = relying_party(load_settings(tmp_path / "demo" / "gateway.yaml"))
    assert party is not None and (party.rp_id, party.origins) == ("localhost", (f"http://localhost:{port}",))
    for name in ("keyring.json", "signing-keys.json", "demo-password.txt"):
        assert (tmp_path / "demo" / name).stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "demo" / "mfa-gateway.db").exists()
    assert process.returncode == 0, "SIGTERM is a graceful shutdown"


def test_users_enroll_prints_the_key_and_writes_a_private_qr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`users enroll NAME` starts a pending enrollment and prints the key, URI and backup codes; --qr writes 0600."""
    config = write_config(tmp_path, base_config(tmp_path))
    qr = tmp_path / "erin.svg"
    assert main(["users", "enroll", "Erin", "--config", str(config), "--qr", str(qr)]) == 0
    out = capsys.readouterr().out
    assert "enrollment started for erin" in out and "otpauth://totp/" in out
    assert qr.stat().st_mode & 0o777 == 0o600 and "<svg" in qr.read_text()
    assert main(["users", "show", "erin", "--config", str(config)]) == 0
    assert "erin: pending" in capsys.readouterr().out


def test_users_add_keeps_email_and_groups_and_enroll_refuses_active_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Replacing a password keeps email and groups; `users enroll` on an active user is a message, not a trace."""
    from mfa_gateway.adapters.users_file import UsersFile

    config = write_config(tmp_path, base_config(tmp_path))
    for extra in (["--email", "g@example.test", "--group", "staff", "--group", "ops"], []):
        run = subprocess.run(
            [*CLI, "users", "add", "gail", "--config", str(config), "--password-stdin", *extra],
            input="a long enough password\n",
            capture_output=True,
            text=True,
            check=False,
        )
        assert run.returncode == 0, run.stderr
    user = UsersFile(tmp_path / "users.yaml").get("gail")
    assert user is not None and user.email == "g@example.test" and user.groups == ("staff", "ops")
    import asyncio

    from mfa_gateway.service.mfa import Caller
    from tests.helpers.gateway import FakeClock, current_code, make_runtime, make_settings

    async def activate() -> None:
        runtime, _ = make_runtime(make_settings(tmp_path), FakeClock())
        await runtime.store.migrate()
        start = await runtime.mfa.start_enrollment(Caller("gail", None))
        await runtime.mfa.activate(Caller("gail", None), current_code(start.secret, FakeClock()))
        await runtime.close()

    asyncio.run(activate())
    assert main(["users", "enroll", "gail", "--config", str(config)]) == 1
    assert "already active" in capsys.readouterr().err


def leaf_parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[str, argparse.ArgumentParser]]:
    """Every command a user can run (``users list``, ``config schema``...), with its parser."""
    found: list[tuple[str, argparse.ArgumentParser]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += leaf_parsers(sub, (*path, name))
    return found or [(" ".join(path), parser)]


def test_every_option_has_help_and_every_command_an_example() -> None:
    """`--help` of each command explains every option and argument and ends with an example, laid out as written."""
    commands = leaf_parsers(cli._parser())
    assert {"serve", "check-config", "demo", "keygen", "users list", "secrets check", "config schema"} <= {
        name for name, _ in commands
    }
    for name, parser in commands:
        for action in parser._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help, f"mfa-gateway {name}: {action.option_strings or action.dest} has no help text"
        assert parser.epilog and parser.epilog.startswith("example:\n  "), f"{name}: no example"
        assert f"mfa-gateway {name}" in parser.epilog, f"{name}: the example does not run the command"
        assert parser.formatter_class is argparse.RawDescriptionHelpFormatter, f"{name}: example is re-wrapped"
        assert "example:\n  " in parser.format_help()


def enrolled_config(tmp_path: Path, users: tuple[str, ...]) -> Path:
    """A config whose store holds a pending enrollment for each of ``users`` (started at FakeClock's START)."""
    import asyncio

    from mfa_gateway.core.model import AuditEvent
    from mfa_gateway.service.mfa import Caller
    from tests.helpers.gateway import START, FakeClock, make_runtime, make_settings

    settings = make_settings(tmp_path)

    async def enroll() -> None:
        runtime, _ = make_runtime(settings, FakeClock())
        await runtime.store.migrate()
        for user in users:
            await runtime.mfa.start_enrollment(Caller(user, "192.0.2.7"))
            event = AuditEvent(START + 90, "mfa.verify", "failure", user, "192.0.2.7")
            await runtime.store.record_audit([event])
        await runtime.close()

    asyncio.run(enroll())
    keys = tmp_path / "keys"
    secrets = {"keyring": f"file:{keys / 'keyring.json'}", "signing_keys": f"file:{keys / 'signing.json'}"}
    return write_config(tmp_path, {**base_config(tmp_path), "secrets": secrets})


def test_users_show_prints_times_in_iso_8601_utc(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """users show prints the enrollment's creation and each audit event's time as ISO 8601 in UTC (`...Z`), not as
    a bare Unix timestamp."""
    from tests.helpers.gateway import START

    config = enrolled_config(tmp_path, ("erin",))
    assert main(["users", "show", "erin", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"  created {iso(START)}" in out
    assert f"  {iso(START + 90)} mfa.verify failure 192.0.2.7" in out
    assert f"{START:.0f}" not in out and f"{START + 90:.0f}" not in out


def test_users_show_and_reset_cover_security_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A user whose only second factor is a security key: users show lists the key (name, when added, never used)
    and exits 0; users reset deletes it, and show then says not enrolled."""
    import asyncio

    from mfa_gateway.core.model import WebAuthnCredential
    from tests.helpers.gateway import START, FakeClock, make_runtime, make_settings

    config = enrolled_config(tmp_path, ())

    async def add_key() -> None:
        runtime, _ = make_runtime(make_settings(tmp_path), FakeClock())
        key = WebAuthnCredential(b"id", "frank", b"h", b"cose", 0, ("usb",), True, False, "0" * 32, "Blue key", START)
        await runtime.store.migrate()
        await runtime.store.add_credential(key, limit=10)
        await runtime.close()

    asyncio.run(add_key())
    assert main(["users", "show", "frank", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "frank: no authenticator app" in out
    assert f"security key 'Blue key': added {iso(START)}, last used never, synced passkey" in out
    assert main(["users", "reset", "frank", "--config", str(config)]) == 1  # memory state: no running gateway
    capsys.readouterr()
    assert main(["users", "show", "frank", "--config", str(config)]) == 1
    assert "frank: not enrolled" in capsys.readouterr().out


def test_users_list_shows_security_keys_and_key_only_users(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """users list holds every user with a second factor, in user order, read a page at a time (here one row a
    page): an app alone as before, an app with keys (their count added), and keys alone (active, - for the app)."""
    import asyncio

    from mfa_gateway import admin
    from mfa_gateway.core.model import WebAuthnCredential
    from tests.helpers.gateway import START, FakeClock, make_runtime, make_settings

    config = enrolled_config(tmp_path, ("erin", "gina"))

    async def add_keys() -> None:
        runtime, _ = make_runtime(make_settings(tmp_path), FakeClock())
        await runtime.store.migrate()
        for user, tag in (("frank", b"f1"), ("gina", b"g1"), ("gina", b"g2"), ("adam", b"a1")):
            key = WebAuthnCredential(tag, user, b"h", b"cose", 0, ("usb",), False, False, "0" * 32, "Key", START)
            await runtime.store.add_credential(key, limit=10)
        await runtime.close()

    asyncio.run(add_keys())
    monkeypatch.setattr(admin, "PAGE", 1)
    assert main(["users", "list", "--config", str(config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["adam", "erin", "frank", "gina"], lines
    assert lines[0] == "adam\tactive\t-\t-\t1 security key"
    assert lines[1].startswith("erin\tpending\tSHA1/6/30s\tkey ") and "security key" not in lines[1]
    assert lines[2] == "frank\tactive\t-\t-\t1 security key"
    assert lines[3].startswith("gina\tpending\tSHA1/6/30s\tkey ") and lines[3].endswith("\t2 security keys")


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_users_list_says_when_there_are_no_enrollments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """users list on an empty store says so (and how users get enrolled) instead of printing nothing."""
    config = enrolled_config(tmp_path, ())
    assert main(["users", "list", "--config", str(config)]) == 0
    assert capsys.readouterr().out.startswith("no enrollments yet")


def test_admin_commands_log_info_only_when_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An admin command prints its answer and no INFO log lines (secrets loaded, migrations); -v/--verbose adds
    them."""
    config = enrolled_config(tmp_path, ("erin",))
    assert main(["users", "list", "--config", str(config)]) == 0
    quiet = capsys.readouterr()
    assert "erin\tpending" in quiet.out and "INFO" not in quiet.err, quiet.err
    assert main(["users", "list", "-v", "--config", str(config)]) == 0
    verbose = capsys.readouterr()
    assert "erin\tpending" in verbose.out and "INFO" in verbose.err and "loaded from file" in verbose.err


def test_config_schema_prints_a_json_schema_the_example_config_meets(capsys: pytest.CaptureFixture[str]) -> None:
    """`config schema` prints the config file's JSON Schema (draft 2020-12); the example config validates against
    it and a misspelt key does not."""
    import jsonschema

    assert main(["config", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    example = yaml.safe_load((REPO / "config" / "gateway.example.yaml").read_text())
    assert list(validator.iter_errors(example)) == []
    assert list(validator.iter_errors({**example, "listen": {"prot": 1}}))


@pytest.mark.parametrize(
    ("variables", "expected"),
    [([], "--port 9090 --app-port 9091"), (["PORT=8090", "APP_PORT=8091"], "--port 8090 --app-port 8091")],
)
def test_make_demo_passes_port_and_app_port(variables: list[str], expected: str) -> None:
    """`make demo PORT=… APP_PORT=…` runs the demo on those ports (9090 and 9091 by default)."""
    shown = subprocess.run(
        ["make", "-n", "-C", str(REPO), "demo", *variables], capture_output=True, text=True, check=True
    ).stdout
    demo_line = next(line for line in shown.splitlines() if "mfa-gateway demo" in line)
    assert demo_line.endswith(f"demo --data-dir .demo {expected}"), demo_line


def readme_walkthrough() -> list[str]:
    """The shell blocks of the "JSON API with builtin users" walk-through (docs/getting-started.md)."""
    guide = (REPO / "docs" / "getting-started.md").read_text()
    section = guide.split("## JSON API with builtin users", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.DOTALL)


def test_readme_builtin_walkthrough_writes_only_into_a_temporary_folder(tmp_path: Path) -> None:
    """The getting-started guide's builtin-users walk-through writes nothing into the repository: every file (keys,
    config, users, database, cookie jar, saved answers) is under D=$(mktemp -d). Its set-up block runs as written
    (up to `serve`) and leaves the folder it runs in untouched."""
    blocks = readme_walkthrough()
    assert blocks and blocks[0].startswith("D=$(mktemp -d)")
    for block in blocks:
        for target in re.findall(r"(?:-[cb] | (?<![<>])[<>](?![<>]) ?)([^\s'\"]\S*)", block):
            assert target.startswith(("$D/", "&", "/dev/")), f"the walk-through writes or reads {target} outside $D"
    setup = (
        blocks[0]
        .split("\n.venv/bin/mfa-gateway serve", 1)[0]
        .replace(".venv/bin/", str(Path(sys.executable).parent) + "/")
    )
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    run = subprocess.run(["bash", "-euc", setup], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    folder = Path(run.stdout.split("D=", 1)[1].splitlines()[0])
    assert folder.parent == tmp_path
    assert {"keyring.json", "signing-keys.json", "gateway.yaml", "users.yaml"} <= {p.name for p in folder.iterdir()}
    assert list(cwd.iterdir()) == []
