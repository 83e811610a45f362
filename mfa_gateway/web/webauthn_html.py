"""The markup of security keys and passkeys on the pages, and what the pages say when one is refused.

Progressive enhancement: what needs the script (``web/static/webauthn.js``) is marked up ``hidden`` with
``data-webauthn-part``, and the script shows it only where the browser can run WebAuthn; a ``data-webauthn-fallback``
paragraph, shown otherwise, says what to do instead. Forms with ``data-webauthn`` run a ceremony and report errors in
the one alert region a page has (``ALERT``), which the server fills too when it refuses an answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from mfa_gateway.core import errors
from mfa_gateway.web import html

ALERT = "webauthn-error"


@dataclass(frozen=True, slots=True)
class Offer:
    """The second factors a page offers a user: ``keys``, their security keys and passkeys (WebAuthn on, at least
    one registered); ``codes``, an authenticator app's codes and its backup codes."""

    keys: bool
    codes: bool


CODES_ONLY = Offer(keys=False, codes=True)


def alert(message: str = "") -> str:
    """Where a key's error is said: announced when it changes (``role="alert"``), empty until then."""
    return f'<p id="{ALERT}" class="error" role="alert">{escape(message)}</p>'


def part(content: str) -> str:
    """Markup that needs the script and WebAuthn: hidden until the script shows it."""
    return f"<div data-webauthn-part hidden>{content}</div>"


def fallback(text: str, css_class: str = "hint") -> str:
    """Shown without the script or WebAuthn, hidden by the script where it can run."""
    return f'<p class="{escape(css_class)}" data-webauthn-fallback>{escape(text)}</p>'


def authenticate_form(action: str, options: str, fields: str, submit: str) -> str:
    """A form the script completes with a key's answer (``ceremonyId``, ``credential``) and then submits: the options
    come from ``options`` (JSON), the answer goes to ``action`` with ``fields`` (CSRF token, return target...)."""
    return (
        f'<form method="post" action="{escape(action)}" data-webauthn="authenticate" data-options="{escape(options)}"'
        f' data-webauthn-alert="{ALERT}">{fields}{html.hidden("ceremonyId", "")}{html.hidden("credential", "")}'
        f'<button type="submit">{escape(submit)}</button></form>'
    )


def register_form(options: str, finish: str, done: str) -> str:
    """A form the script turns into a registration: the name typed, ``options`` and ``finish`` (the JSON API), then
    ``done`` (where the browser goes next). Never submitted as a form."""
    return (
        f'<form data-webauthn="register" data-options="{escape(options)}" data-finish="{escape(finish)}"'
        f' data-next="{escape(done)}" data-webauthn-alert="{ALERT}">'
        + html.field("name", "Name of the new key", extra='maxlength="64"')
        + html.paragraph("For example, where you keep it or what it is: “Blue key”, “Work laptop”.", "hint")
        + '<button type="submit">Register a security key or passkey</button></form>'
    )


KEY_ONLY = (
    "Your second factor is a security key or passkey, and using it here needs JavaScript and a browser that supports "
    "security keys and passkeys. Turn JavaScript on or use another browser; if you cannot, ask an administrator to "
    "reset your two-factor authentication."
)


def challenge_keys(action: str, options: str, fields: str, *, error: str, codes: bool) -> str:
    """The challenge page's key part, first: its alert, the button, and for a user without codes the explanation a
    browser that cannot use the key shows instead."""
    button = authenticate_form(action, options, fields, "Use your security key or passkey")
    intro = html.paragraph("Use the security key or passkey you registered.")
    return alert(error) + part(intro + button) + ("" if codes else fallback(KEY_ONLY, "notice"))


def passkey_signin(action: str, options: str, fields: str, *, error: str) -> str:
    """The sign-in page's passkey part, above the password form: its alert and the button (hidden without the script
    or WebAuthn, so the page is then the password form alone)."""
    button = authenticate_form(action, options, fields, "Sign in with a passkey")
    other = html.paragraph("Or sign in with your user name and password:", "hint")
    return alert(error) + part(button + other)


def refusal(error: errors.MfaError) -> str:
    """A key's answer refused, in words that say what the user can do. The reasons a user can act on are named
    (verification, an address the gateway does not serve); the rest are one message, as the API's code is one."""
    if isinstance(error, errors.SignCounterRegressed):
        return (
            "This security key's signature counter went backwards, which is what a copied key does, so the sign-in is "
            "refused and recorded. Use another key or a code, and tell your administrator."
        )
    if isinstance(error, errors.InvalidWebAuthnResponse):
        if error.reason == "user_verification":
            return (
                "Your security key did not check your PIN, fingerprint or face, which this gateway requires. Set one "
                "up on the key (or use a key that has one) and try again."
            )
        if error.reason == "origin":
            return (
                "Your security key answered for a web address this gateway does not accept keys on. Open the "
                "gateway at its usual address and try again."
            )
        return "Your security key's answer was not accepted. Try again, or use another key."
    if isinstance(error, errors.CeremonyExpired):
        return "The request to your security key expired or was already answered. Try again."
    return error.message
