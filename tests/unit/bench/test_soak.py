"""bench/soak.py's pure parts: RSS growth, and reading one keep-alive response without closing the connection;
bench/u1_upstream.py's body sizes."""

from __future__ import annotations

import socket

import pytest
import soak
import u1_upstream


def test_growth_is_relative_to_the_start() -> None:
    assert soak.rss_growth(100_000, 104_000) == pytest.approx(4.0)
    assert soak.rss_growth(100_000, 99_000) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="no start"):
        soak.rss_growth(0, 10)


def _pair() -> tuple[socket.socket, socket.socket]:
    left, right = socket.socketpair()
    left.settimeout(5)
    return left, right


def test_a_response_is_read_to_the_end_of_its_body_and_the_next_one_follows() -> None:
    ours, theirs = _pair()
    with ours, theirs:
        theirs.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel")
        theirs.sendall(b"lo")
        assert soak.read_response(ours) == 200
        theirs.sendall(b"HTTP/1.1 302 Found\r\ncontent-length: 0\r\n\r\n")
        assert soak.read_response(ours) == 302


def test_a_connection_closed_early_or_a_chunked_body_is_an_error() -> None:
    ours, theirs = _pair()
    with ours:
        theirs.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        theirs.close()
        with pytest.raises(ConnectionError, match="end of the body"):
            soak.read_response(ours)
    ours, theirs = _pair()
    with ours, theirs:
        theirs.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        with pytest.raises(ConnectionError, match="chunked"):
            soak.read_response(ours)


def test_u1_bodies_are_4_to_16_kib_the_same_per_path_and_spread() -> None:
    sizes = [u1_upstream.body_size(path) for path in u1_upstream.paths()]
    assert all(u1_upstream.MIN_BODY <= size <= u1_upstream.MAX_BODY for size in sizes)
    assert sizes == [u1_upstream.body_size(path) for path in u1_upstream.paths()]
    assert min(sizes) < 6000 and max(sizes) > 14000  # the 64 paths cover the range
