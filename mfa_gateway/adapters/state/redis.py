"""Shared state in Redis (6.2 or newer): one view of counters, replay marks and challenges for every replica.

Each decision is one atomic Redis step (a Lua script, ``SET NX`` or ``GETDEL``), so replicas racing on the
same key cannot both win; a TOTP verification is one script in all (refusal, replay mark and counters). Decisions
use the injected ``now``: attempt counters and challenge expiry times are stored as values and judged against it;
real TTLs only collect garbage. Floats cross the Lua boundary as
``%.17g`` strings: Redis truncates Lua numbers to integers in replies, and ``tostring`` keeps 14 digits.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any

import redis.asyncio
import redis.exceptions
from redis.asyncio.connection import AbstractConnection, parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelManagedConnection, SentinelManagedSSLConnection
from redis.backoff import NoBackoff
from redis.credentials import CredentialProvider, UsernamePasswordCredentialProvider

from mfa_gateway.core.errors import DependencyUnavailable
from mfa_gateway.core.model import (
    ATTEMPTS_BUSY,
    IN_FLIGHT_STALE,
    AttemptLimits,
    CodeJudgement,
    Revocation,
    RevocationKind,
    StepClaim,
)
from mfa_gateway.ports import Credential, FixedPassword, PasswordSource, SharedState

# Some redis-py releases leave these untyped and others type them: called through typed names, the code
# type-checks on both without a `type: ignore` that one of them would find unused.
_new_sentinel: Callable[..., Sentinel] = Sentinel

log = logging.getLogger(__name__)

ATTEMPT_RETENTION = 30 * 24 * 3600
"""Seconds an attempt counter outlives its last failure (plus any lock still running); hard locks persist."""

_EXPIRY = struct.Struct(">d")  # a challenge's value is its expiry time followed by the payload

_FMT = """
local function fmt(x) return string.format('%.17g', x) end
"""

_REFUSAL = """
-- The refusal of an attempt on KEYS[1..count] (ARGV[limit_at(i)]: key i's max_failures, then its window): the
-- longest lock in force ('inf' for a hard lock), else busy while the failures counted in a key's window plus its
-- attempts in flight reach max_failures; else nil, and each key's attempts in flight. Writes nothing.
local function refusal(count, now, stale, busy, limit_at)
  local longest = 0
  local rows = {}
  for i = 1, count do
    rows[i] = redis.call('HMGET', KEYS[i], 'until', 'hard', 'n', 't0', 'p', 'pt')
    if rows[i][2] == '1' then return 'inf' end
    longest = math.max(longest, (tonumber(rows[i][1]) or 0) - now)
  end
  if longest > 0 then return fmt(longest) end
  local in_flight = {}
  for i, f in ipairs(rows) do
    local a = limit_at(i)
    local n = tonumber(f[3]) or 0
    local t0 = tonumber(f[4])
    if t0 == nil or now - t0 >= tonumber(ARGV[a + 1]) then n = 0 end
    local p = tonumber(f[5]) or 0
    if now - (tonumber(f[6]) or now) >= stale then p = 0 end
    if n + p >= tonumber(ARGV[a]) then return busy end
    in_flight[i] = p
  end
  return nil, in_flight
end
"""

_COUNT_FAILURE = """
-- One failure counted on key (as a lockout policy does), ARGV[a..a+4]: max_failures, window, lockout, max_lockout,
-- hard_lock_after; with release, the attempt also gives back its reservation.
local function count_failure(key, now, retention, a, release)
  local max_failures = tonumber(ARGV[a])
  local window = tonumber(ARGV[a + 1])
  local lockout = tonumber(ARGV[a + 2])
  local max_lockout = tonumber(ARGV[a + 3])
  local hard_after = tonumber(ARGV[a + 4])
  local f = redis.call('HMGET', key, 'n', 't0', 'lk', 'until', 'c', 'hard', 'p')
  local p = tonumber(f[7]) or 0
  if release then p = math.max(p - 1, 0) end
  local n = tonumber(f[1]) or 0
  local t0 = tonumber(f[2])
  local lk = tonumber(f[3]) or 0
  local locked_until = tonumber(f[4]) or 0
  local c = tonumber(f[5]) or 0
  local hard = f[6] == '1'
  if t0 == nil or now - t0 >= window then
    n = 0
    t0 = now
  end
  n = n + 1
  c = c + 1
  if hard_after > 0 and c >= hard_after then
    hard = true
  elseif n >= max_failures then
    lk = lk + 1
    -- math.max: a failure never shortens a lock in force (one another attempt started meanwhile).
    local length = math.min(lockout * 2 ^ math.min(lk - 1, 62), max_lockout)
    locked_until = math.max(locked_until, now + length)
    n = 0
    t0 = now
  end
  redis.call('HSET', key, 'n', fmt(n), 't0', fmt(t0), 'lk', fmt(lk), 'until', fmt(locked_until),
             'c', fmt(c), 'hard', hard and '1' or '0', 'p', fmt(p))
  if hard then
    redis.call('PERSIST', key)
  else
    redis.call('EXPIRE', key, fmt(math.ceil(retention + math.max(locked_until - now, 0))))
  end
end
"""

_REVOKE = """
-- A revocation kept in the hash KEYS[1] under ARGV[1] and published on the channel of the same name, at once (one
-- round trip, atomic as MULTI/EXEC was).
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PUBLISH', KEYS[1], ARGV[2])
"""

_ADMIT_ATTEMPT = (
    _FMT
    + _REFUSAL
    + """
-- KEYS: attempt hashes. ARGV: now, stale (seconds), busy (the in-flight answer), then per key: max_failures, window.
-- Refused: returns the refusal, writing nothing. Otherwise reserves the attempt on every key (p: in flight, pt: when
-- the first of them was admitted) and returns '0'.
local now = tonumber(ARGV[1])
local stale = tonumber(ARGV[2])
local refused, in_flight = refusal(#KEYS, now, stale, ARGV[3], function(i) return 2 + i * 2 end)
if refused then return refused end
for i, key in ipairs(KEYS) do
  local new = redis.call('EXISTS', key) == 0
  if in_flight[i] == 0 then
    redis.call('HSET', key, 'p', '1', 'pt', fmt(now))  -- staleness counts from the first of a busy spell
  else
    redis.call('HSET', key, 'p', fmt(in_flight[i] + 1))
  end
  if new then redis.call('EXPIRE', key, fmt(math.ceil(stale))) end  -- a failure sets the real retention
end
return '0'
"""
)

_FINISH_ATTEMPT = (
    _FMT
    + _COUNT_FAILURE
    + """
-- KEYS: attempt hashes. ARGV: now, retention, failed ('1' or '0'), release ('1': the attempt holds a reservation),
-- then per key: forget ('1': delete the key), max_failures, window, lockout, max_lockout, hard_lock_after.
-- Releases one reservation on each key (with release); with failed, counts one failure.
local now = tonumber(ARGV[1])
local retention = tonumber(ARGV[2])
local failed = ARGV[3] == '1'
local release = ARGV[4] == '1'
for i, key in ipairs(KEYS) do
  local a = 4 + (i - 1) * 6
  if ARGV[a + 1] == '1' then
    redis.call('DEL', key)
  elseif failed then
    count_failure(key, now, retention, a + 2, release)
  elseif release and redis.call('EXISTS', key) == 1 then
    local p = tonumber(redis.call('HGET', key, 'p')) or 0
    redis.call('HSET', key, 'p', fmt(math.max(p - 1, 0)))
  end
end
return 0
"""
)

_JUDGE_TOTP = (
    _FMT
    + _REFUSAL
    + _COUNT_FAILURE
    + """
-- KEYS: attempt hashes, then the user's last claimed TOTP step. ARGV: now, stale, busy, retention, step (the step the
-- code matched, '' for a wrong code), the step mark's ttl in milliseconds, then per attempt key: forget, max_failures,
-- window, lockout, max_lockout, hard_lock_after. The attempt holds no reservation: it is judged here, at once.
-- Refused: returns the refusal, writing nothing. A step newer than the last claimed: claims it, deletes the keys to
-- forget, returns 'ok'. A wrong code or a step claimed before (a replay): one failure on every key, returns 'failed'.
local count = #KEYS - 1
local now = tonumber(ARGV[1])
local refused = refusal(count, now, tonumber(ARGV[2]), ARGV[3], function(i) return 7 + (i - 1) * 6 + 1 end)
if refused then return refused end
local step = tonumber(ARGV[5])
local accepted = false
if step ~= nil then
  local last = tonumber(redis.call('GET', KEYS[count + 1]))
  if last == nil or step > last then
    redis.call('SET', KEYS[count + 1], ARGV[5], 'PX', ARGV[6])
    accepted = true
  end
end
for i = 1, count do
  local a = 7 + (i - 1) * 6
  if not accepted then
    count_failure(KEYS[i], now, tonumber(ARGV[4]), a + 1, false)
  elseif ARGV[a] == '1' then
    redis.call('DEL', KEYS[i])
  end
end
return accepted and 'ok' or 'failed'
"""
)

FEED_PING_EVERY = 5.0
"""Seconds between pings on an idle revocation feed, so a dead connection is noticed, not waited on."""

_UNAVAILABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


@contextlib.contextmanager
def _redis_unavailable() -> Iterator[None]:
    """Turn driver connection failures into the port's ``DependencyUnavailable``."""
    try:
        yield
    except _UNAVAILABLE as exc:
        log.warning("redis unavailable: %s", type(exc).__name__)  # the type only: a message may carry an address
        raise DependencyUnavailable("redis") from exc


class RotatingCredentials(CredentialProvider):
    """Hands each new connection the login most likely to work, and remembers the ones Redis refused.

    A password rotated in the secret backend reaches new connections within the cache TTL; one removed from Redis
    before the cache noticed is refused once, the secret is re-read and the connection retried with the next
    candidate (the new current value, or AWSPREVIOUS, with its own user name in an alternating-users rotation): no
    request fails. Connections already open stay authenticated (Redis does not end them when a password changes).
    The user name comes from the secret when it has one, else from the URL.
    """

    REMEMBERED = 8

    def __init__(self, source: PasswordSource, username: str | None = None) -> None:
        self._source = source
        self._url_username = username
        self._refused: list[Credential] = []

    def credential(self) -> Credential:
        options = [Credential(c.username or self._url_username, c.password) for c in self._source.candidates()]
        return next((option for option in options if option not in self._refused), options[0])

    def get_credentials(self) -> tuple[str] | tuple[str, str]:
        username, password = self.credential()
        return (username, password) if username else (password,)

    async def get_credentials_async(self) -> tuple[str] | tuple[str, str]:
        return self.get_credentials()

    async def refused(self, credential: Credential) -> None:
        self._refused = [*self._refused, credential][-self.REMEMBERED :]
        await self._source.refresh()

    def accepted(self, credential: Credential) -> None:
        if credential in self._refused:
            self._refused = [c for c in self._refused if c != credential]


def _with_rotating_auth(base: type[AbstractConnection]) -> type[AbstractConnection]:
    class RotatingAuthConnection(base):  # type: ignore[valid-type,misc]
        """Logs in with the likeliest password; when Redis refuses it, reports the refusal (the secret is re-read)
        and logs in once more on a fresh socket with the next candidate, before any command is lost."""

        async def on_connect_check_health(self, check_health: bool = True) -> None:
            shared: object = getattr(self, "credential_provider", None)
            if not isinstance(shared, RotatingCredentials):
                await super().on_connect_check_health(check_health)
                return
            for attempt in range(2):
                credential = shared.credential()
                self.credential_provider: CredentialProvider = UsernamePasswordCredentialProvider(*credential)
                try:
                    await super().on_connect_check_health(check_health)
                except redis.exceptions.AuthenticationError:
                    await shared.refused(credential)
                    if attempt:
                        raise
                    await self.disconnect()
                    await self._connect()
                    continue
                finally:
                    self.credential_provider = shared  # the pool's shared provider, for the next connection
                shared.accepted(credential)
                return

    return RotatingAuthConnection


def _sentinel_clients(
    addresses: Sequence[tuple[str, int]],
    password: str | PasswordSource | None,
    tls: dict[str, Any] | None,
    socket_timeout: float,
) -> list[redis.asyncio.Redis]:
    """Clients for sentinels reached over TLS (``tls``: the ``ssl_*`` options) or with a login of their own; the
    login is one rotating credential shared by all of them: a refused password is re-read and the next candidate
    tried, as for the master."""
    base: type[AbstractConnection] = redis.asyncio.SSLConnection if tls is not None else redis.asyncio.Connection
    options: dict[str, Any] = dict(tls or {}, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout)
    if password is not None:
        options["credential_provider"] = RotatingCredentials(
            FixedPassword(password) if isinstance(password, str) else password
        )
        base = _with_rotating_auth(base)
    return [
        redis.asyncio.Redis.from_pool(
            redis.asyncio.ConnectionPool(connection_class=base, host=host, port=port, **options)
        )
        for host, port in addresses
    ]


def _ms(ttl: float) -> int:
    return max(1, math.ceil(ttl * 1000))


def _per_key(keyed_limits: Sequence[tuple[str, AttemptLimits]], forget: Sequence[str]) -> list[str]:
    """Each key's arguments to the scripts that count failures: forget, then the limits."""
    args: list[str] = []
    for key, limits in keyed_limits:
        args += [
            "1" if key in forget else "0",
            str(limits.max_failures),
            repr(float(limits.window)),
            repr(float(limits.lockout)),
            repr(float(limits.max_lockout)),
            str(limits.hard_lock_after),
        ]
    return args


def _remaining(row: Sequence[bytes | None], now: float) -> float:
    locked_until, hard = row
    if hard == b"1":
        return math.inf
    return max(float(locked_until) - now, 0.0) if locked_until is not None else 0.0


def _as_bytes(raw: bytes | str | None) -> bytes | None:
    if isinstance(raw, str):  # only with decode_responses=True, which from_client refuses
        raise TypeError("the Redis client decodes responses; it must return bytes")
    return raw


def _unexpired_payload(raw: bytes | None, now: float) -> bytes | None:
    if raw is None or len(raw) < _EXPIRY.size:
        return None
    (expires,) = _EXPIRY.unpack_from(raw)
    return None if now >= expires else raw[_EXPIRY.size :]


def _revocation_json(revocation: Revocation) -> bytes:
    return json.dumps(
        {"kind": str(revocation.kind), "subject": revocation.subject, "at": revocation.at, "until": revocation.until}
    ).encode()


def _revocation_of(raw: bytes) -> Revocation:
    data = json.loads(raw)
    return Revocation(RevocationKind(data["kind"]), str(data["subject"]), float(data["at"]), float(data["until"]))


class RedisSharedState(SharedState):
    """``SharedState`` on one Redis server, under keys ``{prefix}att:``, ``totp:``, ``once:``, ``chal:`` and ``wa:``
    (WebAuthn ceremonies).

    Revocations live in the hash ``{prefix}rev`` and are announced on the channel ``{prefix}rev``.

    A connection error is retried once, immediately (a pooled connection may have died in a Redis restart); a
    timeout is not retried, so a call fails within about ``socket_timeout``. A retried write that had already
    taken effect can only make a decision stricter (a claim refused, a failure counted twice), never laxer.
    """

    def __init__(
        self,
        url: str,
        *,
        password: str | PasswordSource | None = None,
        prefix: str = "mfa:",
        socket_timeout: float = 2.0,
        sentinels: Sequence[tuple[str, int]] = (),
        sentinel_master: str | None = None,
        sentinel_password: str | PasswordSource | None = None,
        sentinel_tls: bool = False,
    ) -> None:
        """``url`` names the server, or with ``sentinels`` only the database, TLS and user: the master's address
        then comes from the sentinels, asked again after a failover. ``sentinel_password`` is the sentinels' own
        login (their ``requirepass`` or ACL user), rotated like the master's; with ``sentinel_tls`` they are
        reached over TLS with the ``ssl_*`` options of ``url`` (its CA, client certificate)."""
        options: dict[str, Any] = dict(parse_url(url))
        base: type[AbstractConnection] = options.pop("connection_class", redis.asyncio.Connection)
        if base is redis.asyncio.SSLConnection:
            # Whatever redis-py's default: the certificate must name the server (older releases did not check).
            options.update(ssl_cert_reqs="required", ssl_check_hostname=True)
        if isinstance(password, str):
            password = FixedPassword(password)
        if password is not None:
            options.pop("password", None)
            options["credential_provider"] = RotatingCredentials(password, options.pop("username", None))
        options.update(
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            health_check_interval=30,
            # One retry on a connection error; a refused password is retried with the next candidate (see below).
            retry=Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,)),
        )
        if sentinels and sentinel_master:
            for server_only in ("host", "port", "path"):
                options.pop(server_only, None)
            ssl = base is redis.asyncio.SSLConnection
            managed: type[AbstractConnection] = SentinelManagedSSLConnection if ssl else SentinelManagedConnection
            sentinel = _new_sentinel(list(sentinels), socket_timeout=socket_timeout)
            if sentinel_password is not None or sentinel_tls:
                tls = {k: v for k, v in options.items() if k.startswith("ssl_")} if sentinel_tls else None
                sentinel.sentinels = _sentinel_clients(sentinels, sentinel_password, tls, socket_timeout)
            connection_class = _with_rotating_auth(managed) if password is not None else managed
            client = sentinel.master_for(sentinel_master, connection_class=connection_class, **options)
            self._bind(client, prefix, sentinel.sentinels)
            return
        connection_class = _with_rotating_auth(base) if password is not None else base
        pool = redis.asyncio.ConnectionPool(connection_class=connection_class, **options)
        self._bind(redis.asyncio.Redis.from_pool(pool), prefix)  # the client owns the pool and closes it

    @classmethod
    def from_client(cls, client: redis.asyncio.Redis, *, prefix: str = "mfa:") -> RedisSharedState:
        """Use an existing client (which must return bytes); ``close()`` closes it."""
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("the Redis client must be created with decode_responses=False")
        state = cls.__new__(cls)
        state._bind(client, prefix)
        return state

    def _bind(self, client: redis.asyncio.Redis, prefix: str, sentinels: Sequence[redis.asyncio.Redis] = ()) -> None:
        self._client = client
        self._sentinels = tuple(sentinels)
        self._prefix = prefix
        self._admit_attempt = client.register_script(_ADMIT_ATTEMPT)
        self._finish_attempt = client.register_script(_FINISH_ATTEMPT)
        self._judge_totp = client.register_script(_JUDGE_TOTP)
        self._revoke = client.register_script(_REVOKE)

    def _key(self, kind: str, name: str) -> str:
        return f"{self._prefix}{kind}:{name}"

    async def ping(self) -> None:
        with _redis_unavailable():
            await self._client.ping()

    async def close(self) -> None:
        await self._client.aclose()
        for sentinel in self._sentinels:
            await sentinel.aclose()

    async def lock_remaining(self, keys: Sequence[str], now: float) -> float:
        if not keys:
            return 0.0
        with _redis_unavailable():
            async with self._client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hmget(self._key("att", key), ["until", "hard"])
                rows: list[list[bytes | None]] = await pipe.execute()
        return max(_remaining(row, now) for row in rows)

    async def admit_attempt(self, keyed_limits: Sequence[tuple[str, AttemptLimits]], now: float) -> float:
        if not keyed_limits:
            return 0.0
        args: list[str] = [repr(float(now)), repr(IN_FLIGHT_STALE), repr(ATTEMPTS_BUSY)]
        for _, limits in keyed_limits:
            args += [str(limits.max_failures), repr(float(limits.window))]
        keys = [self._key("att", key) for key, _ in keyed_limits]
        with _redis_unavailable():
            refused = await self._admit_attempt(keys=keys, args=args)
        return float(refused)

    async def finish_attempt(
        self, keyed_limits: Sequence[tuple[str, AttemptLimits]], now: float, *, failed: bool, forget: Sequence[str] = ()
    ) -> None:
        await self._finish(keyed_limits, now, failed=failed, release=True, forget=forget)

    async def record_failure(self, keyed_limits: Sequence[tuple[str, AttemptLimits]], now: float) -> None:
        await self._finish(keyed_limits, now, failed=True, release=False)

    async def _finish(
        self,
        keyed_limits: Sequence[tuple[str, AttemptLimits]],
        now: float,
        *,
        failed: bool,
        release: bool,
        forget: Sequence[str] = (),
    ) -> None:
        if not keyed_limits:
            return
        args = [repr(float(now)), str(ATTEMPT_RETENTION), "1" if failed else "0", "1" if release else "0"]
        args += _per_key(keyed_limits, forget)
        keys = [self._key("att", key) for key, _ in keyed_limits]
        with _redis_unavailable():
            await self._finish_attempt(keys=keys, args=args)

    async def judge_totp_attempt(
        self,
        keyed_limits: Sequence[tuple[str, AttemptLimits]],
        now: float,
        *,
        claim: StepClaim | None,
        forget: Sequence[str] = (),
    ) -> CodeJudgement:
        if claim is None and not keyed_limits:
            return CodeJudgement()
        step, ttl, user = ("", "1", "") if claim is None else (str(claim.step), str(_ms(claim.ttl)), claim.user_id)
        args = [repr(float(now)), repr(IN_FLIGHT_STALE), repr(ATTEMPTS_BUSY), str(ATTEMPT_RETENTION), step, ttl]
        args += _per_key(keyed_limits, forget)
        keys = [self._key("att", key) for key, _ in keyed_limits] + [self._key("totp", user)]
        with _redis_unavailable():
            judged = _as_bytes(await self._judge_totp(keys=keys, args=args))
        if judged == b"ok":
            return CodeJudgement(accepted=True)
        if judged == b"failed":
            return CodeJudgement()
        return CodeJudgement(refused=float(judged or b"nan"))

    async def clear_failures(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        with _redis_unavailable():
            await self._client.delete(*(self._key("att", key) for key in keys))

    async def claim_once(self, key: str, now: float, ttl: float) -> bool:
        with _redis_unavailable():
            claimed = await self._client.set(self._key("once", key), b"1", nx=True, px=_ms(ttl))
        return bool(claimed)

    async def put_challenge(self, challenge_id: str, payload: bytes, now: float, ttl: float) -> None:
        value = _EXPIRY.pack(now + ttl) + payload
        with _redis_unavailable():
            index = self._key("chal-index", "pending")
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.set(self._key("chal", challenge_id), value, px=_ms(ttl))
                pipe.zremrangebyscore(index, "-inf", now)  # expired entries leave the index as new ones come
                pipe.zadd(index, {challenge_id: now + ttl})  # for the pending count
                pipe.pexpire(index, _ms(ttl))  # an index nobody adds to disappears with its last entry
                await pipe.execute()

    async def get_challenge(self, challenge_id: str, now: float) -> bytes | None:
        with _redis_unavailable():
            raw = await self._client.get(self._key("chal", challenge_id))
        return _unexpired_payload(_as_bytes(raw), now)

    async def take_challenge(self, challenge_id: str, now: float) -> bytes | None:
        with _redis_unavailable():
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.getdel(self._key("chal", challenge_id))
                pipe.zrem(self._key("chal-index", "pending"), challenge_id)
                raw, _ = await pipe.execute()
        return _unexpired_payload(_as_bytes(raw), now)

    async def count_challenges(self, now: float) -> int:
        index = self._key("chal-index", "pending")
        with _redis_unavailable():
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.zremrangebyscore(index, "-inf", now)  # expired ones leave the index here
                pipe.zcard(index)
                _, count = await pipe.execute()
        return int(count)

    async def put_ceremony(self, ceremony_id: str, payload: bytes, now: float, ttl: float) -> None:
        with _redis_unavailable():
            await self._client.set(self._key("wa", ceremony_id), _EXPIRY.pack(now + ttl) + payload, px=_ms(ttl))

    async def take_ceremony(self, ceremony_id: str, now: float) -> bytes | None:
        with _redis_unavailable():
            raw = await self._client.getdel(self._key("wa", ceremony_id))  # one GETDEL: one taker on any replica
        return _unexpired_payload(_as_bytes(raw), now)

    async def revoke(self, revocation: Revocation) -> None:
        field = f"{revocation.kind}:{revocation.subject}"
        raw = _revocation_json(revocation)
        with _redis_unavailable():
            await self._revoke(keys=[self._prefix + "rev"], args=[field, raw])

    async def revocations(self, now: float) -> list[Revocation]:
        with _redis_unavailable():
            stored = await self._client.hgetall(self._prefix + "rev")
        current: list[tuple[bytes, Revocation]] = []
        expired: list[tuple[bytes, Revocation]] = []
        for field, raw in stored.items():
            revocation = _revocation_of(_as_bytes(raw) or b"{}")
            field = _as_bytes(field) or b""
            (expired if now >= revocation.until else current).append((field, revocation))
        if expired:
            with _redis_unavailable():
                await self._client.hdel(self._prefix + "rev", *(field for field, _ in expired))
        return [revocation for _, revocation in current]

    async def revocation_feed(self) -> AsyncIterator[Revocation]:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            with _redis_unavailable():
                await pubsub.subscribe(self._prefix + "rev")
                idle = 0.0
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None:
                        idle += 1.0
                        if idle >= FEED_PING_EVERY:
                            await pubsub.ping()
                            idle = 0.0
                        continue
                    idle = 0.0
                    if message.get("type") == "message":
                        yield _revocation_of(message["data"])
        finally:
            with contextlib.suppress(*_UNAVAILABLE):
                close: Callable[[], Awaitable[None]] = pubsub.aclose
                await close()
