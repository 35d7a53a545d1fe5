"""Bounded decompression of request bodies: a compressed bomb stops at the limit and costs nothing more."""

from __future__ import annotations

import io
import zlib

import zstandard

_CHUNK = 64 * 1024


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
    try:
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body), read_across_frames=True) as reader:
            while chunk := reader.read(_CHUNK):
                out += chunk
                if len(out) > limit:
                    raise _too_large(limit)
    except zstandard.ZstdError as error:
        raise CorruptBody(f"body does not decompress: {error}") from None
    return bytes(out)
