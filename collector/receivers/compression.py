"""Bounded decompression of request bodies: a compressed bomb stops at the limit and costs nothing more."""

from __future__ import annotations

import zlib

import zstandard

_ZSTD_MAX_BLOCK = 128 * 1024
_ZSTD_MIN_BLOCK_INPUT = 4
_ZSTD_MAX_WINDOW = 16 * 1024 * 1024  # decoder memory a frame may ask for; zstd -19 uses 8 MiB


class UnsupportedEncoding(ValueError):
    """A Content-Encoding we do not speak (answered with 400)."""


class CorruptBody(ValueError):
    """The body does not decompress (answered with 400)."""


class TooLarge(ValueError):
    """The decompressed body passes the limit (answered with 413)."""


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """``body`` decoded from ``encoding`` (gzip, deflate, zstd, identity or empty), at most ``limit`` bytes."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        if len(body) > limit:
            raise TooLarge(f"body of {len(body)} bytes is larger than the {limit}-byte limit")
        return body
    if encoding in ("gzip", "x-gzip"):
        return _inflate(body, zlib.MAX_WBITS | 16, limit)
    if encoding == "deflate":
        try:  # RFC 9110 deflate is zlib-wrapped; some clients send raw deflate
            return _inflate(body, zlib.MAX_WBITS, limit)
        except CorruptBody:
            return _inflate(body, -zlib.MAX_WBITS, limit)
    if encoding == "zstd":
        return _unzstd(body, limit)
    raise UnsupportedEncoding(f"unsupported Content-Encoding {encoding!r}; use gzip, deflate, zstd or identity")


def _too_large(limit: int) -> TooLarge:
    return TooLarge(f"decompressed body is larger than the {limit}-byte limit")


def _inflate(body: bytes, wbits: int, limit: int) -> bytes:
    out = bytearray()
    pending = body
    try:
        while pending:  # gzip allows several members one after another
            inflater = zlib.decompressobj(wbits)
            data = pending
            while data:
                out += inflater.decompress(data, limit + 1 - len(out))
                if len(out) > limit:
                    raise _too_large(limit)
                data = inflater.unconsumed_tail
            if not inflater.eof:
                raise CorruptBody("compressed body is truncated")
            pending = inflater.unused_data if wbits & 16 else b""
    except zlib.error as error:
        raise CorruptBody(f"body does not decompress: {error}") from None
    return bytes(out)


def _unzstd(body: bytes, limit: int) -> bytes:
    out = bytearray()
    view = memoryview(body)
    offset = 0
    decompressor = zstandard.ZstdDecompressor(max_window_size=_ZSTD_MAX_WINDOW)
    try:
        while offset < len(body):  # zstd allows several frames one after another
            frame = decompressor.decompressobj()
            while offset < len(body) and not frame.eof:
                step = _zstd_step(limit + 1 - len(out))
                out += frame.decompress(view[offset : offset + step])
                offset += step
                if len(out) > limit:
                    raise _too_large(limit)
            if not frame.eof:
                raise CorruptBody("compressed body is truncated")
            offset = min(offset, len(body)) - len(frame.unused_data)
    except zstandard.ZstdError as error:
        raise CorruptBody(f"body does not decompress: {error}") from None
    return bytes(out)


def _zstd_step(budget: int) -> int:
    """Input bytes to feed next: zstd regenerates at most one 128 KiB block from every 4 bytes (an RLE
    block), so a step this size cannot overshoot the remaining ``budget`` by more than a block or two."""
    return _ZSTD_MIN_BLOCK_INPUT * max(1, budget // _ZSTD_MAX_BLOCK)
