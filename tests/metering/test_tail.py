"""The bounded tail: exactly the last N bytes, whatever the chunking; never more held."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.metering import MAX_TAIL_BYTES, TailCollector


@given(
    chunks=st.lists(st.binary(max_size=300), max_size=40),
    limit=st.integers(min_value=1, max_value=256),
)
def test_tail_is_the_last_bytes_of_the_concatenation(chunks: list[bytes], limit: int) -> None:
    tail = TailCollector(limit)
    for chunk in chunks:
        tail.feed(chunk)
        # Never more held than `limit`: a first chunk shorter than it kept as it is, or
        # a ring of exactly `limit` bytes that never grows.
        if tail._ring is None:
            assert tail._first is None or len(tail._first) < limit
        else:
            assert len(tail._ring) == limit
            assert tail._first is None
    body = b"".join(chunks)
    assert tail.tail() == body[-limit:]
    assert tail.seen == len(body)
    assert tail.truncated is (len(body) > limit)


def test_memoryview_and_bytearray_chunks() -> None:
    tail = TailCollector(4)
    tail.feed(bytearray(b"abc"))
    tail.feed(memoryview(b"defgh")[1:])
    assert tail.tail() == b"efgh"
    assert tail.seen == 7


@pytest.mark.parametrize("limit", [0, -1, MAX_TAIL_BYTES + 1])
def test_limit_is_bounded(limit: int) -> None:
    with pytest.raises(ValueError, match="tail size"):
        TailCollector(limit)
