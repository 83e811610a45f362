"""Ciphers for TOTP secrets at rest (``mfa_gateway.ports.TotpCipher``): the local keyring, or a Vault Transit key."""
