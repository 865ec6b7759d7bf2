"""The engine's HPACK decoder (gateway.h2engine.hpackin) against the hpack library's encoder:
dynamic table, evictions, size updates, Huffman, never-indexed fields, and what it refuses."""

from __future__ import annotations

import hpack
import pytest

from gateway.h2engine.hpackin import BlockDecoder, HeaderListTooLarge, HpackError
from gateway.h2engine.hpackout import integer


def test_blocks_from_a_stateful_encoder_over_many_calls() -> None:
    encoder, decoder = hpack.Encoder(), BlockDecoder(64 * 1024)
    for call in range(300):  # enough distinct values to evict from the 4 KiB table
        headers = [(b":method", b"POST"), (b":path", b"/svc/Method"), (b"te", b"trailers"),
                   (b"grpc-timeout", f"{call}m".encode()), (b"x-call", b"v" * (call % 50)),
                   hpack.NeverIndexedHeaderTuple(b"authorization", b"L402 mac:pre")]  # fmt: skip
        for huffman in (True, False):
            decoded = decoder.decode(encoder.encode(headers, huffman=huffman))
            assert decoded == headers
            assert isinstance(decoded[-1], hpack.NeverIndexedHeaderTuple)
            assert not isinstance(decoded[0], hpack.NeverIndexedHeaderTuple)


def test_table_size_updates_shrink_the_table() -> None:
    encoder, decoder = hpack.Encoder(), BlockDecoder(64 * 1024)
    decoder.decode(encoder.encode([(b"x-a", b"1"), (b"x-b", b"2")]))
    encoder.header_table_size = 0  # the encoder announces it in its next block
    block = encoder.encode([(b"x-c", b"3")])
    assert decoder.decode(block) == [(b"x-c", b"3")]
    with pytest.raises(HpackError):
        decoder.decode(integer(62, 7, 0x80))  # the old entries are gone


@pytest.mark.parametrize(
    "block",
    [
        b"\x80",  # index 0
        integer(200, 7, 0x80),  # past both tables
        b"\x3f\xe2\x1f",  # size update to 4097, above our 4096
        b"\x82\x20",  # size update after a field
        b"\x00\x05ab",  # truncated string
        b"\xff\xff\xff\xff\xff\xff\x0f",  # integer too large
        b"\x00\x81\xff\x01a",  # bad Huffman
    ],
)
def test_undecodable_blocks(block: bytes) -> None:
    with pytest.raises(HpackError):
        BlockDecoder(64 * 1024).decode(block)


def test_header_list_limit() -> None:
    block = hpack.Encoder().encode([(b"x-big", b"a" * 5000)])
    with pytest.raises(HeaderListTooLarge):
        BlockDecoder(4096).decode(block)
    assert BlockDecoder(8192).decode(block) == [(b"x-big", b"a" * 5000)]
