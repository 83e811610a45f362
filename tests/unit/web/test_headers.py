"""What the app receives of a client's headers is remembered per list of header names and trust: what is remembered
answers exactly as deciding afresh would, whoever asks next."""

from __future__ import annotations

from pathlib import Path

from multidict import CIMultiDict, CIMultiDictProxy

from mfa_gateway.web.headers import HeaderStripper
from mfa_gateway.web.upstream import hop_by_hop
from tests.helpers.gateway import make_settings

SENT = (("Host", "app"), ("X-Forwarded-Host", "evil"), ("X-Auth-User", "root"), ("X_Forwarded_For", "1.2.3.4"))


def _headers(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


def test_the_same_names_pass_by_the_trust_of_each_request(tmp_path: Path) -> None:
    """The same header names from an untrusted and a trusted peer, in turn: each time the untrusted one loses
    X-Forwarded-Host and the trusted one keeps it; the identity header and the underscored name never pass; values
    are each request's own."""
    stripper = HeaderStripper(make_settings(tmp_path))
    for turn in range(3):
        sent = _headers(*SENT[:3], ("Accept", f"text/{turn}"), SENT[3])
        untrusted, _ = stripper.kept(sent, peer_trusted=False)
        trusted, _ = stripper.kept(sent, peer_trusted=True)
        assert list(untrusted.items()) == [("Host", "app"), ("Accept", f"text/{turn}")]
        assert list(trusted.items()) == [("Host", "app"), ("X-Forwarded-Host", "evil"), ("Accept", f"text/{turn}")]


def test_connection_named_headers_are_dropped_for_that_request_only(tmp_path: Path) -> None:
    """A header named in Connection is dropped from that request; the same names without Connection pass later."""
    stripper = HeaderStripper(make_settings(tmp_path))
    named, _ = stripper.kept(_headers(("Connection", "X-Secret"), ("X-Secret", "1")), peer_trusted=True)
    assert "X-Secret" not in named
    plain, _ = stripper.kept(_headers(("X-Secret", "1")), peer_trusted=True)
    assert plain.get("X-Secret") == "1"
    assert "x-secret" in hop_by_hop(_headers(("Connection", "keep-alive, X-Secret")))
    assert "x-secret" not in hop_by_hop(_headers(("Connection", "keep-alive")))
