"""Header blocks we send: HPACK without a dynamic table (RFC 7541), so each field's
encoding never changes and is computed once.

A stateful HPACK encoder searches and updates its dynamic table for every
field of every block: on small gRPC calls that was a tenth of the engine's
CPU. This encoder uses only the static table (an indexed field when name and
value are in it, else a literal "without indexing" naming the static entry
when the name is there) and raw string literals, and it announces a dynamic
table of size 0 in the first block and after each change of the peer's
SETTINGS_HEADER_TABLE_SIZE (RFC 7541 4.2, 6.3). Encodings of ordinary fields
are kept in a bounded dict; credential fields (`NeverIndexedHeaderTuple`,
RFC 7541 7.1.3) are encoded as "never indexed" every time and never kept.
The cost: repeated fields cross the connection again in every block, a few
hundred bytes a request; loopback and LAN upstreams do not notice.
"""

from __future__ import annotations

from collections.abc import Iterable

from hpack import NeverIndexedHeaderTuple
from hpack.table import HeaderTable

_STATIC: tuple[tuple[bytes, bytes], ...] = HeaderTable.STATIC_TABLE
_FIELD_INDEX: dict[tuple[bytes, bytes], int] = {}
_NAME_INDEX: dict[bytes, int] = {}
for _index, (_name, _value) in enumerate(_STATIC, start=1):
    _FIELD_INDEX.setdefault((_name, _value), _index)
    _NAME_INDEX.setdefault(_name, _index)

_TABLE_SIZE_ZERO = b"\x20"  # dynamic table size update to 0 (RFC 7541 6.3)
_CACHE_LIMIT = 4096


def integer(value: int, prefix_bits: int, flags: int) -> bytes:
    """RFC 7541 5.1: `value` with an N-bit prefix, `flags` in the first byte's high bits."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((flags | value,))
    out = bytearray((flags | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(data: bytes) -> bytes:
    return integer(len(data), 7, 0) + data  # H = 0: raw octets, no Huffman


def field(name: bytes, value: bytes, *, never_indexed: bool = False) -> bytes:
    """One header field's representation, without touching any dynamic table."""
    if not never_indexed:
        index = _FIELD_INDEX.get((name, value))
        if index is not None:
            return integer(index, 7, 0x80)  # indexed header field
    flags = 0x10 if never_indexed else 0x00  # literal never indexed / without indexing
    name_index = _NAME_INDEX.get(name)
    if name_index is not None:
        return integer(name_index, 4, flags) + _string(value)
    return bytes((flags,)) + _string(name) + _string(value)


class BlockEncoder:
    """Header blocks for one connection (see the module docstring)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[bytes, bytes], bytes] = {}
        self._announce = True  # the next block starts with a table size update

    def table_size_changed(self) -> None:
        """The peer's SETTINGS_HEADER_TABLE_SIZE changed: say ours is 0 again."""
        self._announce = True

    def encode(self, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
        parts = [_TABLE_SIZE_ZERO] if self._announce else []
        self._announce = False
        cache = self._cache
        for item in headers:
            if isinstance(item, NeverIndexedHeaderTuple):
                parts.append(field(item[0], item[1], never_indexed=True))
                continue
            encoded = cache.get(item)
            if encoded is None:
                encoded = field(item[0], item[1])
                if len(cache) >= _CACHE_LIMIT:
                    cache.clear()
                cache[(item[0], item[1])] = encoded
            parts.append(encoded)
        return b"".join(parts)
