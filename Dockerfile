# syntax=docker/dockerfile:1
#
# mfa-gateway container image.
#
#   docker build -t mfa-gateway:0.1.0 .
#   docker run --read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges \
#     -v "$PWD/secrets:/run/secrets/mfa-gateway:ro" -v mfa-gateway-data:/var/lib/mfa-gateway \
#     -p 9090:9090 mfa-gateway:0.1.0
#
# The builder turns the checkout into a wheel (what tests/deploy/test_image.py builds too) and installs it, with its
# locked dependencies, into a virtualenv at /opt/mfa-gateway; the runtime stage copies only that virtualenv. Both stages
# must use the same base image: the virtualenv's interpreter is a link to the base image's Python.
#
# The process runs as UID/GID 10001 and writes only where configured: /var/lib/mfa-gateway (the SQLite file of the
# default config; a VOLUME) and /tmp (a tmpfs / emptyDir). Everything else may be read-only (docker run --read-only,
# readOnlyRootFilesystem: true). Configuration lives in /etc/mfa-gateway/, keys in /run/secrets/mfa-gateway/.

# Bump with each Python 3.11 security release; pin by digest in your own pipeline if you need bit-for-bit rebuilds.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY requirements/runtime.txt requirements/build.txt ./requirements/
COPY pyproject.toml README.md ./
COPY mfa_gateway ./mfa_gateway

# Every dependency comes from the hashed lock (requirements/runtime.txt), the build backend too (build.txt, with build
# isolation off), so a rebuild next month installs the same versions. The virtualenv gets no pip of its own
# (nothing installs packages at run time); the builder's pip installs into it.
RUN python -m pip install --no-cache-dir --require-hashes --no-deps -r requirements/build.txt \
    && python -m pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
    && python -m venv --without-pip /opt/mfa-gateway \
    && python -m pip --python /opt/mfa-gateway/bin/python install --no-cache-dir --require-hashes --no-deps \
       -r requirements/runtime.txt \
    && python -m pip --python /opt/mfa-gateway/bin/python install --no-cache-dir --no-deps /wheels/*.whl \
    && /opt/mfa-gateway/bin/mfa-gateway --version

FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="mfa-gateway" \
      org.opencontainers.image.description="TOTP multi-factor authentication in front of any web application" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PATH=/opt/mfa-gateway/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONFAULTHANDLER=1 \
    MFA_GATEWAY_HEALTHCHECK_URL=http://127.0.0.1:9090/_mfa/healthz

# A fixed, numeric, non-root identity: Kubernetes' runAsUser/fsGroup and file ownership on volumes rely on it.
RUN groupadd --system --gid 10001 mfa-gateway \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin mfa-gateway \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/mfa-gateway \
    && install -d -m 0755 /etc/mfa-gateway /run/secrets/mfa-gateway

COPY --from=builder /opt/mfa-gateway /opt/mfa-gateway
COPY config/gateway.container.yaml /etc/mfa-gateway/gateway.yaml

WORKDIR /var/lib/mfa-gateway
VOLUME ["/var/lib/mfa-gateway"]
# 9090: the gateway (listen.port). 9464: the admin listener, GET /metrics (admin.port).
EXPOSE 9090 9464
USER 10001:10001

# Liveness only: healthz never touches Redis, the database or Vault. The standard library only (no curl in slim),
# and no proxy from the environment for a loopback check. Another listen.port or prefix: set
# MFA_GATEWAY_HEALTHCHECK_URL.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.build_opener(u.ProxyHandler({})).open(os.environ['MFA_GATEWAY_HEALTHCHECK_URL'], timeout=4)"]

# SIGTERM: stop accepting, give in-flight requests 15 s (docker stop -t 20, terminationGracePeriodSeconds >= 20).
STOPSIGNAL SIGTERM
ENTRYPOINT ["mfa-gateway"]
CMD ["serve", "--config", "/etc/mfa-gateway/gateway.yaml"]
