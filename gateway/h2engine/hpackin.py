"""Header blocks we receive: an HPACK decoder (RFC 7541) with one branch per field.

The `hpack` library's decoder made a few objects and a debug-log call per
field: after the frame layer went lean, it was the engine's largest Python
cost on small gRPC calls (three blocks a call). This one reads the block in
place, keeps the dynamic table as a deque, and uses hpack's Huffman table
(`decode_huffman`) for Huffman-coded strings. Fields the peer marked "never
indexed" come out as `NeverIndexedHeaderTuple`, so a proxy keeps the mark.
"""

from __future__ import annotations

from collections import deque

from hpack import NeverIndexedHeaderTuple
from hpack.huffman_table import decode_huffman
from hpack.table import HeaderTable

from gateway.h2engine.grpcwire import RawHeaders

_STATIC: tuple[tuple[bytes, bytes], ...] = HeaderTable.STATIC_TABLE
_STATIC_COUNT = len(_STATIC)
_ENTRY_OVERHEAD = 32  # RFC 7541 4.1
_MAX_INTEGER = 2**32


class HpackError(Exception):
    """The block cannot be decoded (a COMPRESSION_ERROR); the message never quotes it."""


class HeaderListTooLarge(HpackError):
    """The decoded header list is over our SETTINGS_MAX_HEADER_LIST_SIZE."""


class BlockDecoder:
    """One connection's decoding context (the dynamic table is per connection and direction)."""

    def __init__(self, max_header_list_size: int, max_table_size: int = 4096) -> None:
        self.max_header_list_size = max_header_list_size
        self._limit = max_table_size  # our SETTINGS_HEADER_TABLE_SIZE
        self._max = max_table_size  # the size the peer's encoder chose (<= limit)
        self._size = 0
        self._table: deque[tuple[bytes, bytes]] = deque()

    def decode(self, block: bytes) -> RawHeaders:
        out: RawHeaders = []
        pos, end = 0, len(block)
        listed = 0
        limit = self.max_header_list_size
        while pos < end:
            first = block[pos]
            if first & 0x80:  # indexed field
                index, pos = _integer(block, pos, 7)
                out.append(self._entry(index))
                listed += len(out[-1][0]) + len(out[-1][1]) + _ENTRY_OVERHEAD
            elif first & 0x40:  # literal with incremental indexing
                name, value, pos = self._literal(block, pos, 6)
                self._add(name, value)
                out.append((name, value))
                listed += len(name) + len(value) + _ENTRY_OVERHEAD
            elif first & 0x20:  # dynamic table size update: only before the first field
                if out:
                    raise HpackError("table size update after a field")
                size, pos = _integer(block, pos, 5)
                if size > self._limit:
                    raise HpackError("table size over our setting")
                self._max = size
                self._evict()
            else:  # literal without indexing (0000) or never indexed (0001)
                name, value, pos = self._literal(block, pos, 4)
                out.append(NeverIndexedHeaderTuple(name, value) if first & 0x10 else (name, value))
                listed += len(name) + len(value) + _ENTRY_OVERHEAD
            if listed > limit:
                raise HeaderListTooLarge("header list too large")
        return out

    def _entry(self, index: int) -> tuple[bytes, bytes]:
        if 0 < index <= _STATIC_COUNT:
            return _STATIC[index - 1]
        offset = index - _STATIC_COUNT - 1
        if 0 <= offset < len(self._table):
            return self._table[offset]
        raise HpackError("index out of the tables")

    def _literal(self, block: bytes, pos: int, prefix: int) -> tuple[bytes, bytes, int]:
        index, pos = _integer(block, pos, prefix)
        if index:
            name = self._entry(index)[0]
        else:
            name, pos = _string(block, pos)
        value, pos = _string(block, pos)
        return name, value, pos

    def _add(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value) + _ENTRY_OVERHEAD
        if size > self._max:  # RFC 7541 4.4: the table is emptied, the entry not added
            self._table.clear()
            self._size = 0
            return
        self._table.appendleft((name, value))
        self._size += size
        self._evict()

    def _evict(self) -> None:
        table = self._table
        while self._size > self._max:
            name, value = table.pop()
            self._size -= len(name) + len(value) + _ENTRY_OVERHEAD


def _integer(block: bytes, pos: int, prefix: int) -> tuple[int, int]:
    mask = (1 << prefix) - 1
    value = block[pos] & mask
    pos += 1
    if value < mask:
        return value, pos
    shift = 0
    end = len(block)
    while True:
        if pos >= end:
            raise HpackError("truncated integer")
        byte = block[pos]
        pos += 1
        value += (byte & 0x7F) << shift
        if value > _MAX_INTEGER:
            raise HpackError("integer too large")
        if not byte & 0x80:
            return value, pos
        shift += 7


def _string(block: bytes, pos: int) -> tuple[bytes, int]:
    if pos >= len(block):
        raise HpackError("truncated string")
    huffman = block[pos] & 0x80
    length, pos = _integer(block, pos, 7)
    end = pos + length
    if end > len(block):
        raise HpackError("truncated string")
    raw = block[pos:end]
    if huffman:
        try:
            raw = decode_huffman(raw)
        except Exception:  # hpack's own error type for a bad code or padding
            raise HpackError("bad Huffman string") from None
    return raw, end
