"""Secret providers (``file:``, ``vault:``, ``awssm:``); the Vault Transit cipher is in ``adapters.ciphers``.

Each provider implements ``mfa_gateway.ports.SecretProvider`` with blocking methods; the secret cache
(``mfa_gateway.secrets.cache``) calls them off the event loop and decides what a failure means.
"""
