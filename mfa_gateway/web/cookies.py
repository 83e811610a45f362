"""Setting and clearing the gateway's cookies, always with the same hardened attributes."""

from __future__ import annotations

from aiohttp import web

from mfa_gateway.config import Settings
from mfa_gateway.core.keyring import Keyring
from mfa_gateway.core.session import Session, seal


def pending_cookie_name(settings: Settings) -> str:
    return settings.session.cookie_name + "_pending"


def device_cookie_name(settings: Settings) -> str:
    return settings.trusted_devices.cookie(settings.session.secure)


def _attributes(settings: Settings) -> dict[str, object]:
    return {"path": "/", "httponly": True, "secure": settings.session.secure, "samesite": "Lax"}


def set_session(
    response: web.StreamResponse, settings: Settings, keyring: Keyring, session: Session, now: float
) -> None:
    set_sealed_session(response, settings, seal(session, keyring), session.expires_at, now)


def set_sealed_session(
    response: web.StreamResponse, settings: Settings, sealed: str, expires_at: float, now: float
) -> None:
    """Set a session cookie sealed earlier (the gate seals a refreshed session once, not once per response)."""
    response.set_cookie(
        settings.session.cookie_name,
        sealed,
        max_age=max(1, int(expires_at - now)),
        **_attributes(settings),  # type: ignore[arg-type]
    )


def set_pending(response: web.StreamResponse, settings: Settings, challenge_id: str) -> None:
    response.set_cookie(
        pending_cookie_name(settings),
        challenge_id,
        max_age=int(settings.challenge_ttl),
        **_attributes(settings),  # type: ignore[arg-type]
    )


def clear_pending(response: web.StreamResponse, settings: Settings) -> None:
    response.del_cookie(pending_cookie_name(settings), **_attributes(settings))  # type: ignore[arg-type]


def set_device(response: web.StreamResponse, settings: Settings, token: str, max_age: float) -> None:
    """A remembered device's token, for as long as its grant lasts (and no longer)."""
    response.set_cookie(
        device_cookie_name(settings),
        token,
        max_age=max(1, int(max_age)),
        **_attributes(settings),  # type: ignore[arg-type]
    )


def clear_device(response: web.StreamResponse, settings: Settings) -> None:
    response.del_cookie(device_cookie_name(settings), **_attributes(settings))  # type: ignore[arg-type]
