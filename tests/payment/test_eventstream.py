"""Cutting an SSE byte stream into whole events, whatever the chunking (sans-I/O)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.payment.eventstream import EventSplitter, billable, is_done, is_event_stream

EVENTS = [
    b'data: {"a":1}\n\n',
    b"event: x\r\ndata: two\r\ndata: lines\r\n\r\n",
    b": a comment\n\n",
    b"data: cr only\r\r",
    b"data: [DONE]\n\n",
]
STREAM = b"".join(EVENTS)


def split(chunks: list[bytes], limit: int = 1 << 20) -> list[bytes]:
    splitter = EventSplitter(limit)
    out: list[bytes] = []
    for chunk in chunks:
        out += splitter.feed(chunk)
    rest = splitter.rest()
    return out + ([rest] if rest else [])


def test_whole_stream_gives_each_event_with_its_terminator() -> None:
    assert split([STREAM]) == EVENTS


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_chunking_gives_the_same_events(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    chunks = [STREAM[a:b] for a, b in zip([0, *points], [*points, len(STREAM)], strict=True)]
    assert split(chunks) == EVENTS


def test_a_cr_at_the_end_waits_for_the_next_byte() -> None:
    splitter = EventSplitter()
    assert splitter.feed(b"data: x\r\n\r") == []  # could be CRLF CR(LF): not decided yet
    assert splitter.feed(b"\n") == [b"data: x\r\n\r\n"]


def test_an_event_without_a_boundary_is_never_held_past_the_limit() -> None:
    assert split([b"data: " + b"x" * 100], limit=50) == [b"data: " + b"x" * 100]


def test_billable_events_carry_data_and_are_not_the_done_marker() -> None:
    assert [billable(e) for e in EVENTS] == [True, True, False, True, False]
    assert [is_done(e) for e in EVENTS] == [False, False, False, False, True]
    assert is_event_stream("text/event-stream; charset=utf-8")
    assert not is_event_stream("application/json")
