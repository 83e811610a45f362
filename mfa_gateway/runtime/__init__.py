"""The running gateway's infrastructure and its composition roots (the gateway's, and the sidecar injector's).

``build`` is the only module that constructs the gateway's adapters and wires them to the services, and
``injector`` the one that wires the sidecar injector's (``tests/unit/test_architecture.py`` checks both);
``hashing`` is the Argon2id pool and ``metrics`` the Prometheus side; ``tls`` and ``generated_tls`` keep the
injector's serving certificate current.
Front doors (``serve``, the CLI's tools) ask ``build`` for what they need.

``mfa_gateway.logs`` stays outside this package: the secrets room registers every value it reads with the log
redactor and must not depend on the composition root; and ``web.server`` imports it at module level, before
``serve`` sets ``PROMETHEUS_MULTIPROC_DIR``, which prometheus-client reads when it is first imported (importing this
package imports ``build`` and with it the metrics library).
"""

from mfa_gateway.runtime.build import (
    Runtime,
    build_runtime,
    build_state,
    build_store,
    longest_session,
    open_sources,
    totp_cipher,
)

__all__ = ["Runtime", "build_runtime", "build_state", "build_store", "longest_session", "open_sources", "totp_cipher"]
