"""The protobuf encoding, as much of it as LND's messages need: varints and length-delimited
fields out, every wire type in (unknown fields skipped, as protobuf requires).

Why not the protobuf library: its generated classes for LND's messages cost
each process ~2 MiB and ~0.1 s to import, beside grpcio (bench/README.md),
for the dozen fields the seller reads. Decoding is strict about structure (a
truncated varint or a length past the end is a `WireError`), lenient about
content (unknown field numbers are skipped).
"""

from __future__ import annotations

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5
_MASK64 = (1 << 64) - 1
_MAX_VARINT_BYTES = 10


class WireError(ValueError):
    """Bytes that are not a well-formed protobuf message."""


def varint(value: int) -> bytes:
    """Base-128 varint of a uint64 (a negative int64 as its 64-bit two's complement)."""
    value &= _MASK64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key(number: int, wire_type: int) -> bytes:
    return varint((number << 3) | wire_type)


def int_field(number: int, value: int) -> bytes:
    """A varint field (int64, uint64, bool, enum); proto3 omits the default 0."""
    return _key(number, VARINT) + varint(value) if value else b""


def bytes_field(number: int, value: bytes) -> bytes:
    """A length-delimited field (bytes, or an embedded message); omitted when empty."""
    return _key(number, LENGTH) + varint(len(value)) + value if value else b""


def string_field(number: int, value: str) -> bytes:
    return bytes_field(number, value.encode("utf-8"))


def _read_varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    end = min(len(data), pos + _MAX_VARINT_BYTES)
    while pos < end:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            if result > _MASK64:
                raise WireError("varint larger than 64 bits")
            return result, pos
        shift += 7
    raise WireError("truncated or over-long varint")


Fields = dict[int, list[int | bytes]]


def parse(data: bytes) -> Fields:
    """Every field of one message: number -> values in order (varints as int, length-delimited
    as bytes; fixed-width values as int). Raises WireError on malformed input."""
    fields: Fields = {}
    pos, size = 0, len(data)
    while pos < size:
        key, pos = _read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        value: int | bytes
        if wire_type == VARINT:
            value, pos = _read_varint(data, pos)
        elif wire_type == LENGTH:
            length, pos = _read_varint(data, pos)
            if length > size - pos:
                raise WireError("length-delimited field runs past the end")
            value = data[pos : pos + length]
            pos += length
        elif wire_type in (FIXED64, FIXED32):
            width = 8 if wire_type == FIXED64 else 4
            if width > size - pos:
                raise WireError("fixed-width field runs past the end")
            value = int.from_bytes(data[pos : pos + width], "little")
            pos += width
        else:
            raise WireError(f"unsupported wire type {wire_type}")
        fields.setdefault(number, []).append(value)
    return fields


def last_int(fields: Fields, number: int, *, signed: bool = False) -> int:
    """A scalar varint field (the last value wins, as in protobuf); 0 when absent."""
    values = fields.get(number)
    if not values:
        return 0
    value = values[-1]
    if not isinstance(value, int):
        raise WireError(f"field {number}: expected a varint")
    if signed and value >= 1 << 63:
        value -= 1 << 64
    return value


def last_bytes(fields: Fields, number: int) -> bytes:
    values = fields.get(number)
    if not values:
        return b""
    value = values[-1]
    if not isinstance(value, bytes):
        raise WireError(f"field {number}: expected a length-delimited value")
    return value


def last_string(fields: Fields, number: int) -> str:
    try:
        return last_bytes(fields, number).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WireError(f"field {number}: not UTF-8") from exc


def repeated_bytes(fields: Fields, number: int) -> list[bytes]:
    values = fields.get(number, [])
    if not all(isinstance(v, bytes) for v in values):
        raise WireError(f"field {number}: expected length-delimited values")
    return [v for v in values if isinstance(v, bytes)]
