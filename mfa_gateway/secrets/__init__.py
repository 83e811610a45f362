"""The gateway's own secrets, in one room: the reference grammar (``refs``), the cache that serves and refreshes
them (``cache``), the sources a config opens (``sources``) and the key material built from them (``keys``).

The providers that read a backend live in ``mfa_gateway.adapters.secrets``; the composition root
(``mfa_gateway.runtime.build``) constructs them and hands them in. Nothing here imports the web layer.
"""
