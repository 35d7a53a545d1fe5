"""collector/receivers/compression.py: every Content-Encoding we accept, corrupt bodies, and bombs."""

from __future__ import annotations

import functools
import gzip
import os
import tracemalloc
import zlib
from collections.abc import Callable

import pytest
import zstandard

from collector.receivers.compression import CorruptBody, TooLarge, UnsupportedEncoding, decompress

MiB = 1024 * 1024
LIMIT = MiB
BOMB_SIZE = 200 * MiB
# A payload that compresses but is not trivial: text with random ids in it, as span batches are.
PAYLOAD = b"".join(
    b'{"span": "%s", "text": "the quick brown fox"}\n' % os.urandom(8).hex().encode() for _ in range(2000)
)


def deflate_zlib(data: bytes) -> bytes:
    return zlib.compress(data)


def deflate_raw(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


def zstd_without_content_size(data: bytes) -> bytes:
    """As a streaming compressor writes it: the frame does not say how large its content is."""
    return zstandard.ZstdCompressor(write_content_size=False).compress(data)


COMPRESSORS: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
    "gzip": ("gzip", gzip.compress),
    "x-gzip": ("x-gzip", gzip.compress),
    "gzip-upper-case": (" GZIP ", gzip.compress),
    "deflate-zlib": ("deflate", deflate_zlib),
    "deflate-raw": ("deflate", deflate_raw),
    "zstd": ("zstd", zstd),
    "zstd-streamed": ("zstd", zstd_without_content_size),
    "identity": ("identity", lambda data: data),
    "empty": ("", lambda data: data),
}


@pytest.mark.parametrize("name", COMPRESSORS)
def test_round_trip(name: str) -> None:
    encoding, compress = COMPRESSORS[name]
    assert decompress(compress(PAYLOAD), encoding, LIMIT) == PAYLOAD


@pytest.mark.parametrize("name", COMPRESSORS)
def test_empty_body_is_empty(name: str) -> None:
    encoding, _ = COMPRESSORS[name]
    assert decompress(b"", encoding, LIMIT) == b""


@pytest.mark.parametrize("name", COMPRESSORS)
def test_exactly_the_limit_passes_and_one_byte_more_does_not(name: str) -> None:
    encoding, compress = COMPRESSORS[name]
    body = os.urandom(LIMIT)
    assert decompress(compress(body), encoding, LIMIT) == body
    with pytest.raises(TooLarge):
        decompress(compress(body + b"x"), encoding, LIMIT)


def test_gzip_members_one_after_another_are_all_read() -> None:
    """RFC 1952 allows several members; ``cat a.gz b.gz`` is a valid gzip stream."""
    body = gzip.compress(b"first member,") + gzip.compress(b"") + gzip.compress(b"third member")
    assert decompress(body, "gzip", LIMIT) == b"first member,third member"


def test_zstd_frames_one_after_another_are_all_read() -> None:
    body = zstd(b"first frame,") + zstd_without_content_size(b"second frame")
    assert decompress(body, "zstd", LIMIT) == b"first frame,second frame"


def test_identity_larger_than_the_limit() -> None:
    with pytest.raises(TooLarge, match=r"^body of 1048577 bytes is larger than the 1048576-byte limit$"):
        decompress(b"x" * (LIMIT + 1), "identity", LIMIT)


@pytest.mark.parametrize("encoding", ["br", "compress", "gzip, identity", "lz4", "snappy"])
def test_unknown_encoding(encoding: str) -> None:
    with pytest.raises(UnsupportedEncoding) as raised:
        decompress(gzip.compress(PAYLOAD), encoding, LIMIT)
    assert str(raised.value) == f"unsupported Content-Encoding {encoding!r}; use gzip, deflate, zstd or identity"


TRUNCATABLE = ["gzip", "deflate-zlib", "deflate-raw", "zstd", "zstd-streamed"]


@pytest.mark.parametrize("name", TRUNCATABLE)
@pytest.mark.parametrize("cut", [1, 4, 100], ids=lambda cut: f"minus-{cut}")
def test_truncated_body_is_corrupt_not_shorter(name: str, cut: int) -> None:
    """A truncated stream must never pass as the shorter (possibly empty, possibly still valid) request."""
    encoding, compress = COMPRESSORS[name]
    with pytest.raises(CorruptBody):
        decompress(compress(PAYLOAD)[:-cut], encoding, LIMIT)


@pytest.mark.parametrize("name", TRUNCATABLE)
def test_garbage_is_corrupt(name: str) -> None:
    encoding, _ = COMPRESSORS[name]
    with pytest.raises(CorruptBody, match=r"^body does not decompress: "):
        decompress(b"this is not compressed at all" * 10, encoding, LIMIT)


@pytest.mark.parametrize("name", ["gzip", "zstd"])
def test_flipped_byte_is_corrupt(name: str) -> None:
    """The checksum (gzip's CRC-32, zstd's with content checksums on) catches a damaged body."""
    encoding, _ = COMPRESSORS[name]
    compress = gzip.compress if name == "gzip" else zstandard.ZstdCompressor(write_checksum=True).compress
    body = bytearray(compress(PAYLOAD))
    body[len(body) // 2] ^= 0xFF
    with pytest.raises(CorruptBody):
        decompress(bytes(body), encoding, LIMIT)


@pytest.mark.parametrize("name", ["gzip", "zstd"])
def test_trailing_garbage_after_a_complete_stream_is_corrupt(name: str) -> None:
    encoding, compress = COMPRESSORS[name]
    with pytest.raises(CorruptBody):
        decompress(compress(PAYLOAD) + b"\x00garbage", encoding, LIMIT)


@functools.cache
def bomb(name: str) -> bytes:
    """200 MiB of zeros, compressed (about 200 KB with gzip, 6 KB with zstd); built once per run."""
    zeros = bytes(MiB)
    if name == "zstd":
        compressor = zstandard.ZstdCompressor(write_content_size=False).compressobj()
        return b"".join(compressor.compress(zeros) for _ in range(BOMB_SIZE // MiB)) + compressor.flush()
    wbits = {"gzip": zlib.MAX_WBITS | 16, "deflate-zlib": zlib.MAX_WBITS, "deflate-raw": -zlib.MAX_WBITS}[name]
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    return b"".join(compressor.compress(zeros) for _ in range(BOMB_SIZE // MiB)) + compressor.flush()


@pytest.mark.parametrize("name", ["gzip", "deflate-zlib", "deflate-raw", "zstd"])
def test_bomb_stops_at_the_limit(name: str) -> None:
    encoding, _ = COMPRESSORS[name]
    body = bomb(name)
    tracemalloc.start()
    try:
        with pytest.raises(TooLarge, match=r"^decompressed body is larger than the 1048576-byte limit$"):
            decompress(body, encoding, LIMIT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * LIMIT, f"decompressing a bomb with a 1 MiB limit allocated {peak} bytes at peak"


def test_gzip_bomb_split_across_many_members_stops_at_the_limit() -> None:
    member = gzip.compress(bytes(MiB))
    with pytest.raises(TooLarge):
        decompress(member * 200, "gzip", LIMIT)


def test_zstd_bomb_split_across_many_frames_stops_at_the_limit() -> None:
    frame = zstd(bytes(MiB))
    with pytest.raises(TooLarge):
        decompress(frame * 200, "zstd", LIMIT)
