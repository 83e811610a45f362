"""Reading a request or response body up to a size limit."""

from __future__ import annotations

import asyncio

import aiohttp


async def read_at_most(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """``limit`` bytes of ``stream``, fewer only where it ends: ``StreamReader.read(n)`` returns only what has arrived
    so far, so a body that comes in pieces would be cut at the first (and a size limit never seen)."""
    try:
        return await stream.readexactly(limit)
    except asyncio.IncompleteReadError as short:
        return short.partial
