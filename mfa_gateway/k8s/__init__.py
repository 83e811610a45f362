"""Kubernetes: the sidecar injection (pure), used by ``mfa-gateway inject -f`` and, to follow, the webhook."""
