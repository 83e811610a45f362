"""mfa-gateway: TOTP multi-factor authentication in front of any web application."""

__version__ = "0.1.0"
