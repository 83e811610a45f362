"""Checks of the addresses a config names: database, Redis and Vault URLs (never with a password), Redis Sentinel
addresses, loopback hosts and CIDRs. Each raises ``ValueError`` with the product's wording; the schema's validators
call them so the reasons sit in one place."""

from __future__ import annotations

import ipaddress
import logging
import re
from typing import NamedTuple
from urllib.parse import parse_qsl, urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

log = logging.getLogger("mfa_gateway.config")

AnyNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# The forms above for the JSON Schema, which cannot call ``ipaddress``: an IPv4 network (no leading zeros, prefix
# 0-32) or anything IPv6-shaped with a prefix 0-128; host bits and the finer IPv6 rules are left to check-config.
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
CIDR_PATTERN = (
    rf"^({_OCTET}\.){{3}}{_OCTET}(/(3[0-2]|[12]?[0-9]))?$"
    r"|^[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))?$"
)
SENTINEL_PATTERN = r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.:-]+):[0-9]{1,5}$"


def unmapped(network: AnyNetwork) -> AnyNetwork:
    """An IPv4-mapped IPv6 network (``::ffff:10.0.0.0/104``) as the IPv4 network it stands for: client and proxy
    addresses are judged in their IPv4 form, so the mapped form would never match."""
    mapped = network.network_address.ipv4_mapped if isinstance(network, ipaddress.IPv6Network) else None
    if mapped is not None and network.prefixlen >= 96:
        return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


def password_in(url: str) -> str | None:
    """Where ``url`` carries a password as redis-py and requests read it (``urlsplit``): ``user:password@``, even
    with an empty password, or a query parameter whose name holds ``password`` (``password=``, ``ssl_password=``,
    any case). None if nowhere."""
    parts = urlsplit(url)
    if parts.password is not None:
        return "user:password@"
    return next((f"?{name}=" for name, _ in parse_qsl(parts.query) if "password" in name.lower()), None)


def refuse_password_in(url: str, key: str) -> None:
    """Secrets come from secret references only, never from the config file: ``key`` is where this URL's password
    belongs instead."""
    where = password_in(url)
    if where is None:
        return
    if where.lower() in ("user:password@", "?password="):
        raise ValueError(f"do not write the password into the URL ({where}); use {key} with a secret reference")
    raise ValueError(
        f"do not write a password into the URL ({where}): the config holds no secrets; give a TLS key file "
        "without a passphrase, mounted from your secret store"
    )


def sqlalchemy_password_in(url: str) -> bool:
    """SQLAlchemy, which opens ``store.url``, reads a password up to the ``@`` before the host, so one holding ``/``,
    ``?`` or ``#`` hides from ``urlsplit`` (``postgresql+asyncpg://app:pa/ss@db/mfa``)."""
    try:
        return make_url(url).password is not None
    except (ArgumentError, ValueError):
        # The exception's text may quote the URL: the message must not.
        raise ValueError("cannot be read as a database URL; check the port is a number") from None


def check_store_url(url: str) -> str:
    if not url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        raise ValueError("use sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST:PORT/DB")
    refuse_password_in(url, "store.password")
    if sqlalchemy_password_in(url):
        raise ValueError("do not write the password into the URL; use store.password with a secret reference")
    return url


def check_redis_url(url: str) -> str:
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("use redis://HOST:PORT/DB, rediss://HOST:PORT/DB (TLS) or unix:///PATH")
    refuse_password_in(url, "state.password")
    tls = {name: value for name, value in parse_qsl(urlsplit(url).query) if name.startswith("ssl_")}
    if tls and not url.startswith("rediss://"):
        raise ValueError(f"{', '.join(tls)} only apply to rediss:// (TLS); use rediss:// or remove them")
    checks_off = tls.get("ssl_check_hostname", "true").lower() in ("false", "0", "no", "off")
    if tls.get("ssl_cert_reqs", "required").lower() != "required" or checks_off:
        raise ValueError(
            "ssl_cert_reqs and ssl_check_hostname must keep certificate and host name checks on; give the CA "
            "that signed the server with ssl_ca_certs=PATH instead"
        )
    return url


def check_vault_address(address: str) -> str:
    parts = urlsplit(address)
    if parts.username is not None:
        # requests would send it as Basic credentials, and the host is what follows the last @.
        raise ValueError("no user or password in the address; Vault logs in through secrets.vault.auth")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if not parts.hostname or port == 0:
        raise ValueError("give a host and, if any, a port 1-65535, e.g. https://vault.example:8200")
    return address


def loopback(url: str) -> bool:
    """Whether ``url``'s host is this machine: ``localhost`` (any case, no trailing dot, which would ask DNS), an
    address in 127.0.0.0/8, ``::1``, or ``::ffff:127.x.y.z`` (which reaches 127.x.y.z). Anything else, or a URL
    that does not parse, is not: callers fail closed."""
    try:
        host = urlsplit(url).hostname  # lower case, without brackets and without any user@ in front
    except ValueError:
        return False
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return False
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return (mapped or address).is_loopback


class SentinelAddress(NamedTuple):
    """A Redis Sentinel's address as redis-py takes it: the host without brackets, and the port."""

    host: str
    port: int


SENTINEL_FORM = "write HOST:PORT or [IPV6]:PORT, e.g. redis-sentinel-0.mfa.svc:26379 or [fd00::1]:26379"
_HOST_NAME = re.compile(r"(?:[A-Za-z0-9-]{1,63}\.)*[A-Za-z0-9-]{1,63}\.?", re.ASCII)


def sentinel_address(value: object) -> SentinelAddress:
    """``HOST:PORT`` (a name or IPv4 address), ``[IPV6]:PORT``, or, as always accepted, ``IPV6:PORT`` split at the
    last colon. The port is 1-65535."""
    if not isinstance(value, str):
        raise ValueError(f"each sentinel is one string; {SENTINEL_FORM}")
    host, _, port = value.rpartition(":")
    if not re.fullmatch(r"[0-9]{1,5}", port) or not 1 <= int(port) <= 65535:
        raise ValueError(f"{value!r} does not end in :PORT with a port 1-65535; {SENTINEL_FORM}")
    bracketed = len(host) > 2 and host[0] == "[" and host[-1] == "]"
    if bracketed:
        host = host[1:-1]
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{value!r}: {host!r} is no IPv6 address; {SENTINEL_FORM}") from None
        if not bracketed:
            log.warning("state.sentinels: %s is read as host %s, port %s; write [%s]:%s", value, host, port, host, port)
    elif not _HOST_NAME.fullmatch(host):
        raise ValueError(f"{value!r}: {host!r} is no host name or address; {SENTINEL_FORM}")
    return SentinelAddress(host, int(port))
