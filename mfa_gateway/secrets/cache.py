"""The secret cache: every secret the gateway uses, read once, served from memory, refreshed in the background.

Request handlers call ``get(ref)``, a dictionary lookup: the hot path never waits for Vault or AWS. A background
loop (``run``) calls ``refresh_due()``, which refreshes each secret ahead of its TTL, with jitter so replicas do not
refresh in step. A refresh first asks the provider for the current version (metadata only) and fetches the value
only when that changed. Providers block (hvac, boto3), so they run in worker threads; one refresh per secret is in
flight at a time and concurrent callers await the same task.

Failure rules (the design's "Secrets" section):

* ``TransientSecretError`` (timeout, 5xx, sealed, throttled): keep serving the last good value, marked stale, for up
  to ``max_stale`` seconds after it was last confirmed; retry with backoff; log a warning naming the reference.
* ``PermanentSecretError`` (403 after a fresh login, not found, deleted version, missing field): fail closed, so
  ``get`` raises, until a later refresh succeeds. A transient error after a permanent one does not revive the value.
* A subscriber (``subscribe``) that rejects a new value (a malformed keyring, say) keeps the previous value in
  service and records the error; the next refresh tries again.

Nothing here ever logs, stores in an error or exposes in ``status()`` a secret value: only references, versions,
sources and provider messages (which by contract hold no values).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TypeVar

from mfa_gateway.core.errors import DependencyUnavailable
from mfa_gateway.core.secret import Secret
from mfa_gateway.ports import Fetched, PermanentSecretError, SecretBackendError, SecretProvider, TransientSecretError
from mfa_gateway.secrets.refs import SecretRef, SecretRefError, parse_ref

log = logging.getLogger("mfa_gateway.secrets")

T = TypeVar("T")
Subscriber = Callable[[Secret[str]], object]
RESULTS = ("ok", "unchanged", "rejected", "transient_error", "permanent_error")


class SecretUnavailable(DependencyUnavailable):
    """A secret cannot be served. Clients see only the generic message; ``reason`` (for logs) names the reference."""

    default_message = "A secret the gateway needs is unavailable; try again shortly."

    def __init__(self, ref: str, reason: str) -> None:
        super().__init__("secrets")
        self.ref = ref
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SecretStatus:
    """One secret's state for readiness, metrics and the admin page. Holds no value."""

    ref: str
    required: bool
    usable: bool
    source: str | None
    version: str | None
    loaded_at: float | None
    """When the value now served was fetched."""
    checked_at: float | None
    """When the backend last confirmed it current (a fetch, or an unchanged version)."""
    age: float | None
    """Seconds since ``checked_at``."""
    stale: bool
    failed_closed: bool
    last_error: str | None
    next_refresh: float
    fetches: Mapping[str, int]
    """Refresh outcomes: ok, unchanged, rejected, transient_error, permanent_error."""


@dataclass(eq=False)
class _Entry:
    ref: SecretRef
    required: bool
    value: Secret[str] | None = None
    previous: Secret[str] | None = None
    version: str | None = None
    source: str | None = None
    loaded_at: float | None = None
    checked_at: float | None = None
    due: float = 0.0
    failed_closed: bool = False
    last_result: str | None = None
    last_error: str | None = None
    failures: int = 0
    fetches: Counter[str] = field(default_factory=Counter)
    subscribers: list[Subscriber] = field(default_factory=list)
    inflight: asyncio.Task[None] | None = None
    inflight_forced: bool = False
    fetched_at: float | None = None


class SecretCache:
    def __init__(
        self,
        providers: Mapping[str, SecretProvider],
        *,
        clock: Callable[[], float] = time.time,
        ttl: float = 300.0,
        jitter: float = 0.1,
        max_stale: float = 86400.0,
        refresh_ahead: float = 0.1,
        retry_min: float = 5.0,
        full_fetch_every: float | None = None,
        executor: Executor | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if ttl <= 0 or not 0 <= jitter < 1 or not 0 <= refresh_ahead < 1 or max_stale < ttl or retry_min <= 0:
            raise ValueError("need ttl > 0, 0 <= jitter < 1, 0 <= refresh_ahead < 1, max_stale >= ttl, retry_min > 0")
        self._providers = dict(providers)
        self._clock = clock
        self.ttl, self.jitter, self.max_stale, self.refresh_ahead = ttl, jitter, max_stale, refresh_ahead
        self._retry_min = retry_min
        self.full_fetch_every = full_fetch_every if full_fetch_every is not None else 3 * ttl
        self._executor = executor
        self._rng = rng or random.Random()  # noqa: S311 - jitter spreads load; it protects nothing
        self._entries: dict[SecretRef, _Entry] = {}

    @property
    def providers(self) -> tuple[SecretProvider, ...]:
        return tuple(self._providers.values())

    def register(self, ref: SecretRef | str, *, required: bool = True) -> SecretRef:
        """Track a secret (idempotent; required wins). It is read by ``load_all`` or the first refresh."""
        parsed = parse_ref(ref) if isinstance(ref, str) else ref
        if parsed.scheme not in self._providers:
            raise SecretRefError(f"{parsed}: no {parsed.scheme}: provider is configured; configure that backend")
        entry = self._entries.setdefault(parsed, _Entry(parsed, required))
        entry.required = entry.required or required
        return parsed

    def subscribe(self, ref: SecretRef | str, callback: Subscriber) -> None:
        """Call ``callback(value)`` now (if loaded) and whenever the value changes; if it raises, the change is refused.

        Subscribers run in order on the event loop; with several per secret, the ones before a refusing one have
        already seen the new value, so give a secret one subscriber when refusal matters (build, then swap).
        """
        entry = self._entry(ref)
        entry.subscribers.append(callback)
        if entry.value is not None:
            callback(entry.value)

    def get(self, ref: SecretRef | str) -> Secret[str]:
        """The value from memory, or ``SecretUnavailable``: never loaded, failed closed, or stale beyond max_stale."""
        entry = self._entry(ref)
        reason = self._unusable_reason(entry, self._clock())
        if reason is not None or entry.value is None:
            raise SecretUnavailable(str(entry.ref), reason or "not loaded")
        return entry.value

    def usability(self, ref: SecretRef | str) -> Callable[[], None]:
        """A check that raises ``SecretUnavailable`` unless the secret may be served, for objects built from it
        (keyrings) and made on every use; bound to the secret once, so a use does not look it up again."""
        entry = self._entry(ref)

        def require() -> None:
            reason = self._unusable_reason(entry, self._clock())
            if reason is not None:
                raise SecretUnavailable(str(entry.ref), reason)

        return require

    def alternatives(self, ref: SecretRef | str) -> list[Secret[str]]:
        """The current value, then the previous one where the backend keeps it (AWSPREVIOUS), for a retried login."""
        entry = self._entry(ref)
        current = self.get(ref)
        if entry.previous is not None and entry.previous != current:
            return [current, entry.previous]
        return [current]

    async def wait_value(self, ref: SecretRef | str) -> Secret[str]:
        """The value, reading it first if it is not usable yet (single-flight). For start-up and lazy callers."""
        entry = self._entry(ref)
        if self._unusable_reason(entry, self._clock()) is not None:
            await self._refresh_entry(entry, force=True)
        return self.get(ref)

    async def load_all(self) -> dict[str, str]:
        """Read every registered secret now; the ones not usable afterwards, as reference -> reason."""
        await self.refresh(force=True)
        return self._failures()

    def load_now(self) -> dict[str, str]:
        """``load_all`` in the calling thread, for start-up and CLI tools before an event loop serves anything."""
        for entry in self._entries.values():
            provider = self._providers[entry.ref.scheme]
            try:
                fetched = provider.fetch(entry.ref)
            except TransientSecretError as exc:
                self._transient(entry, exc.message)
                continue
            except PermanentSecretError as exc:
                self._permanent(entry, exc.message)
                continue
            try:
                previous = provider.previous(entry.ref)
            except SecretBackendError:
                previous = None  # only a retried login needs it; the background refresh tries again
            self._accept(entry, fetched, previous.value if previous is not None else None)
        return self._failures()

    async def refresh(self, ref: SecretRef | str | None = None, *, force: bool = True) -> None:
        """Refresh one secret or all now (SIGHUP, admin endpoint). ``force`` skips the change check and re-reads."""
        entries = [self._entry(ref)] if ref is not None else list(self._entries.values())
        await asyncio.gather(*(self._refresh_entry(entry, force=force) for entry in entries))

    async def refresh_due(self) -> None:
        """Refresh the secrets whose time has come (the background loop's step; tests call it with a fake clock)."""
        now = self._clock()
        await asyncio.gather(*(self._refresh_entry(e, force=False) for e in self._entries.values() if e.due <= now))

    async def run(self, stop: asyncio.Event, *, max_sleep: float = 30.0) -> None:
        """Refresh in the background until ``stop`` is set; an unexpected error is logged and the loop goes on."""
        while not stop.is_set():
            try:
                await self.refresh_due()
            except Exception:  # noqa: BLE001 - the loop must outlive any single failure; providers are bounded
                log.error("secret refresh loop: unexpected error; continuing", exc_info=False)
            pending = [e.due for e in self._entries.values()]
            sleep = min([max_sleep, *(due - self._clock() for due in pending)])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(0.5, sleep))

    @property
    def ready(self) -> bool:
        """Every required secret is usable (readiness; liveness must never depend on this)."""
        now = self._clock()
        return all(self._unusable_reason(e, now) is None for e in self._entries.values() if e.required)

    def status(self) -> list[SecretStatus]:
        now = self._clock()
        return [self._status(entry, now) for entry in self._entries.values()]

    def _status(self, entry: _Entry, now: float) -> SecretStatus:
        age = now - entry.checked_at if entry.checked_at is not None else None
        usable = self._unusable_reason(entry, now) is None
        stale = usable and (
            entry.last_result in ("transient_error", "rejected") or (age is not None and age > self.ttl)
        )
        return SecretStatus(
            ref=str(entry.ref),
            required=entry.required,
            usable=usable,
            source=entry.source,
            version=entry.version,
            loaded_at=entry.loaded_at,
            checked_at=entry.checked_at,
            age=age,
            stale=stale,
            failed_closed=entry.failed_closed,
            last_error=entry.last_error,
            next_refresh=entry.due,
            fetches=Counter({result: entry.fetches[result] for result in RESULTS}),
        )

    def _entry(self, ref: SecretRef | str) -> _Entry:
        key = parse_ref(ref) if isinstance(ref, str) else ref
        try:
            return self._entries[key]
        except KeyError:
            raise LookupError(f"{key} was never registered with the secret cache") from None

    def _failures(self) -> dict[str, str]:
        """The secrets not usable now, as reference (its text, for messages) -> reason."""
        now = self._clock()
        return {str(ref): reason for ref, e in self._entries.items() if (reason := self._unusable_reason(e, now))}

    def _unusable_reason(self, entry: _Entry, now: float) -> str | None:
        if entry.failed_closed:
            return f"failed closed: {entry.last_error}"
        if entry.value is None or entry.checked_at is None:
            return f"not loaded: {entry.last_error}" if entry.last_error else "not loaded yet"
        if now - entry.checked_at > self.max_stale:
            age = now - entry.checked_at
            return f"not confirmed for {age:.0f} s, beyond max_stale ({self.max_stale:.0f} s): {entry.last_error}"
        return None

    async def _refresh_entry(self, entry: _Entry, *, force: bool) -> None:
        running = entry.inflight
        if running is not None and not running.done() and force and not entry.inflight_forced:
            await asyncio.shield(running)  # a forced read must not be satisfied by a version check already under way
        if entry.inflight is None or entry.inflight.done():
            entry.inflight = asyncio.ensure_future(self._refresh_now(entry, force=force))
            entry.inflight_forced = force
        await asyncio.shield(entry.inflight)

    async def _refresh_now(self, entry: _Entry, *, force: bool) -> None:
        provider = self._providers[entry.ref.scheme]
        # The value itself is read again at least every ``full_fetch_every`` seconds even when the version is
        # unchanged: access to the value can be revoked while the metadata stays readable (fail closed then).
        fetched_recently = entry.fetched_at is not None and self._clock() - entry.fetched_at < self.full_fetch_every
        try:
            if not force and entry.value is not None and not entry.failed_closed and fetched_recently:
                version = await self._blocking(provider.current_version, entry.ref)
                if version is not None and version == entry.version:
                    self._confirmed(entry, "unchanged")
                    return
            fetched = await self._blocking(provider.fetch, entry.ref)
            previous = await self._previous(provider, entry, fetched)
        except TransientSecretError as exc:
            self._transient(entry, exc.message)
        except PermanentSecretError as exc:
            self._permanent(entry, exc.message)
        except Exception as exc:  # noqa: BLE001 - a provider bug must not kill the refresh loop; no message (may hold data)
            self._transient(entry, f"unexpected {type(exc).__name__} in the {entry.ref.scheme} provider")
        else:
            self._accept(entry, fetched, previous)

    async def _previous(self, provider: SecretProvider, entry: _Entry, fetched: Fetched) -> Secret[str] | None:
        if type(provider).previous is SecretProvider.previous:
            return None  # the backend keeps no previous value by name: skip the thread hop
        try:
            previous = await self._blocking(provider.previous, entry.ref)
        except SecretBackendError as exc:
            # After a rotation the value this process held is what AWSPREVIOUS names; keep offering it.
            log.warning("secret %s: reading the previous version failed (%s)", entry.ref, exc.message)
            return entry.value if entry.value is not None and entry.version != fetched.version else entry.previous
        return previous.value if previous is not None else None

    def _accept(self, entry: _Entry, fetched: Fetched, previous: Secret[str] | None) -> None:
        now = self._clock()
        changed = entry.value is None or fetched.value != entry.value
        if changed:
            try:
                for subscriber in entry.subscribers:
                    subscriber(fetched.value)
            except Exception as exc:  # noqa: BLE001 - a subscriber's refusal is data, not a crash
                self._rejected(entry, fetched, exc)
                return
            entry.value, entry.loaded_at = fetched.value, now
        entry.fetched_at = now
        entry.version, entry.source, entry.previous = fetched.version, fetched.source, previous
        if entry.last_result in ("transient_error", "permanent_error", "rejected") or changed:
            log.info("secret %s: %s from %s", entry.ref, "loaded" if changed else "available again", fetched.source)
        self._confirmed(entry, "ok")

    def _rejected(self, entry: _Entry, fetched: Fetched, exc: Exception) -> None:
        detail = str(exc).replace(fetched.value.reveal(), "**********") if fetched.value.reveal() else str(exc)
        message = f"version {fetched.version} from {fetched.source} was refused: {type(exc).__name__}: {detail}"
        entry.fetches["rejected"] += 1
        entry.last_result, entry.last_error = "rejected", message
        if entry.value is None:
            entry.failed_closed = True
            log.error("secret %s: %s; nothing to serve", entry.ref, message)
        else:  # the previous value stays in service, stale: max_stale bounds how long a broken rotation can last
            log.warning("secret %s: %s; keeping version %s (stale)", entry.ref, message, entry.version)
        self._schedule(entry, failed=True)

    def _confirmed(self, entry: _Entry, result: str) -> None:
        entry.fetches[result] += 1
        entry.checked_at = self._clock()
        entry.failed_closed, entry.failures = False, 0
        entry.last_result, entry.last_error = result, None
        self._schedule(entry, failed=False)

    def _transient(self, entry: _Entry, message: str) -> None:
        entry.fetches["transient_error"] += 1
        entry.last_result, entry.last_error = "transient_error", message
        now = self._clock()
        if entry.failed_closed:
            log.warning("secret %s: %s; still failing closed", entry.ref, message)
        elif entry.value is None:
            log.warning("secret %s: %s; nothing to serve yet", entry.ref, message)
        elif (reason := self._unusable_reason(entry, now)) is None:
            assert entry.checked_at is not None
            age = now - entry.checked_at
            log.warning("secret %s: %s; serving the value confirmed %.0f s ago (stale)", entry.ref, message, age)
        else:
            log.error("secret %s: %s", entry.ref, reason)
        self._schedule(entry, failed=True)

    def _permanent(self, entry: _Entry, message: str) -> None:
        entry.fetches["permanent_error"] += 1
        entry.last_result, entry.last_error = "permanent_error", message
        entry.failed_closed = True
        log.error("secret %s: %s; failing closed", entry.ref, message)
        self._schedule(entry, failed=True)

    def _schedule(self, entry: _Entry, *, failed: bool) -> None:
        interval = self.ttl * (1 - self.refresh_ahead)
        if failed:
            entry.failures += 1
            interval = min(interval, self._retry_min * 2 ** min(entry.failures - 1, 30))
        entry.due = self._clock() + interval * (1 - self.jitter * self._rng.random())

    async def _blocking(self, function: Callable[[SecretRef], T], ref: SecretRef) -> T:
        if self._executor is None:
            return await asyncio.to_thread(function, ref)
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, ref)
