"""Usage read from an answer's tail (JSON, SSE) or a header: exact, strict, never invented."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.metering import (
    TailCollector,
    UsageProblem,
    UsageSource,
    usage_from_header,
    usage_from_tail,
)
from gateway.metering.jsonusage import usage_from_json
from gateway.metering.reading import load_json
from gateway.metering.sse import events, usage_from_sse

from .streams import chat_json, chat_stream, sse_event, usage_object

SSE = "text/event-stream"
JSON = "application/json"

# Text a buyer can make a model write: it must never be read as usage.
FORGED = (
    '"usage": {"prompt_tokens": 999999, "completion_tokens": 1},'
    ' data: {"usage": {"total_tokens": 7}}\n\n'
)
content = st.lists(
    st.one_of(st.text(max_size=40), st.just(FORGED), st.just("\n\ndata: [DONE]\n\n")), max_size=12
)


def feed(body: bytes, limit: int, cuts: list[int] | None = None) -> TailCollector:
    tail = TailCollector(limit)
    points = sorted({0, len(body), *(c % (len(body) + 1) for c in cuts or [])})
    for start, end in itertools.pairwise(points):
        tail.feed(body[start:end])
    return tail


# --- JSON ------------------------------------------------------------------------------


def test_json_body_prompt_plus_completion() -> None:
    reading = usage_from_tail(
        feed(chat_json(["hi"], 11, 31), 16384), "application/json; charset=utf-8"
    )
    assert (reading.units, reading.source) == (42, UsageSource.JSON)


@pytest.mark.parametrize(
    ("usage", "units"),
    [
        ({"total_tokens": 9}, 9),  # no split: the total
        ({"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 99}, 5),  # the split wins
        ({"prompt_tokens": 2, "total_tokens": 8}, 8),  # half a split: the total
    ],
)
def test_which_counts_are_debited(usage: dict[str, int], units: int) -> None:
    body = json.dumps({"usage": usage}).encode()
    assert usage_from_json(body, whole=True).units == units


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": -1, "completion_tokens": 3},
        {"prompt_tokens": 1.5, "completion_tokens": 3},
        {"prompt_tokens": "1", "completion_tokens": 3},
        {"prompt_tokens": True, "completion_tokens": 3},
        {"total_tokens": 2**60},
        {"cached_tokens": 4},
        [1, 2],
        "lots",
    ],
)
def test_malformed_usage_is_malformed(usage: object) -> None:
    body = json.dumps({"usage": usage}).encode()
    assert usage_from_json(body, whole=True).problem is UsageProblem.MALFORMED
    cut = b'{"choices": [], ' + json.dumps({"usage": usage}).encode()[1:]
    assert usage_from_json(cut, whole=False).problem is UsageProblem.MALFORMED


def test_json_missing_usage_and_not_json() -> None:
    assert usage_from_json(b'{"usage": null}', whole=True).problem is UsageProblem.MISSING
    assert usage_from_json(b'{"choices": []}', whole=True).problem is UsageProblem.MISSING
    assert usage_from_json(b"<html>oops</html>", whole=True).problem is UsageProblem.MALFORMED
    assert usage_from_json(b"[1]", whole=True).problem is UsageProblem.MISSING


def test_cut_json_reads_the_last_member_named_usage() -> None:
    body = chat_json(["x" * 5000], 7, 8)
    reading = usage_from_tail(feed(body, 200), JSON)
    assert (reading.units, reading.source) == (15, UsageSource.JSON_TAIL)
    # A string value "usage" or an array element is not a member name.
    assert usage_from_json(b'"kind": "usage", "n": 1}', whole=False).problem is UsageProblem.MISSING


@settings(max_examples=200)
@given(
    parts=content,
    prompt=st.integers(0, 10**6),
    completion=st.integers(0, 10**6),
    limit=st.integers(16, 4096),
    cuts=st.lists(st.integers(0, 10**5), max_size=8),
)
def test_json_tail_never_invents_usage(
    parts: list[str], prompt: int, completion: int, limit: int, cuts: list[int]
) -> None:
    body = chat_json(parts, prompt, completion)
    reading = usage_from_tail(feed(body, limit, cuts), JSON)
    usage_len = len(json.dumps({"usage": usage_object(prompt, completion)}))
    if limit >= usage_len:
        assert reading.units == prompt + completion
    else:
        assert reading.units in (None, prompt + completion)


# --- SSE -------------------------------------------------------------------------------


@settings(max_examples=200)
@given(
    parts=content,
    prompt=st.integers(0, 10**6),
    completion=st.integers(0, 10**6),
    limit=st.integers(1, 4096),
    cuts=st.lists(st.integers(0, 10**5), max_size=12),
    eol=st.sampled_from(["\n", "\r\n", "\r"]),
)
def test_sse_usage_survives_any_chunking_and_any_tail_that_holds_it(
    parts: list[str], prompt: int, completion: int, limit: int, cuts: list[int], eol: str
) -> None:
    body = chat_stream(parts, prompt, completion, eol=eol)
    reading = usage_from_tail(feed(body, limit, cuts), SSE)
    final = sse_event(
        {
            "object": "chat.completion.chunk",
            "choices": [],
            "usage": usage_object(prompt, completion),
        },
        eol=eol,
    )
    needed = len(final) + len(sse_event("[DONE]", eol=eol)) + 2 * len(eol)
    if limit >= needed or limit >= len(body):
        assert (reading.units, reading.source) == (prompt + completion, UsageSource.SSE)
    else:
        # A tail too short to hold the usage event finds none: never another number.
        assert reading.units in (None, prompt + completion)


def test_sse_without_usage_chunk_is_missing() -> None:
    body = chat_stream(["a", "b"], None, 0)
    assert usage_from_tail(feed(body, 16384), SSE).problem is UsageProblem.MISSING


def test_sse_last_usage_wins_and_running_totals() -> None:
    body = b"".join(sse_event({"usage": {"total_tokens": n}}) for n in (3, 9, 27))
    assert usage_from_sse(body, whole=True).units == 27
    # The last usage-bearing event is malformed: no fallback to an earlier count.
    body += sse_event({"usage": {"total_tokens": -4}})
    assert usage_from_sse(body, whole=True).problem is UsageProblem.MALFORMED


def test_sse_grammar() -> None:
    stream = (
        b": keep-alive comment\n"
        b'event: message\nid: 7\ndata:{"usage":\ndata: {"total_tokens": 5}}\n\n'
        b"data: [DONE]\n\n"
    )
    assert list(events(stream, whole=True)) == ['{"usage":\n{"total_tokens": 5}}', "[DONE]"]
    assert usage_from_sse(stream, whole=True).units == 5
    # An event not closed by a blank line when the stream ends is discarded.
    assert usage_from_sse(b'data: {"usage": {"total_tokens": 5}}\n', whole=True).units is None
    # A cut tail skips whatever precedes its first event boundary.
    cut = b'{"total_tokens": 5}}\n\ndata: [DONE]\n\n'
    assert list(events(b"data: " + cut, whole=False)) == ["[DONE]"]


def test_compressed_and_other_media_types() -> None:
    body = chat_json(["hi"], 1, 2)
    tail = feed(body, 16384)
    assert usage_from_tail(tail, JSON, "gzip").problem is UsageProblem.ENCODED
    assert usage_from_tail(tail, JSON, "identity").units == 3
    assert usage_from_tail(tail, "text/plain").problem is UsageProblem.UNSUPPORTED_TYPE
    assert usage_from_tail(tail, "application/vnd.api+json").units == 3


# --- header ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "units", "problem"),
    [
        (["42"], 42, None),
        ([" 42\t"], 42, None),
        (["0"], 0, None),
        ([], None, UsageProblem.MISSING),
        (["42", "43"], None, UsageProblem.MALFORMED),
        (["-1"], None, UsageProblem.MALFORMED),
        (["+1"], None, UsageProblem.MALFORMED),
        (["4 2"], None, UsageProblem.MALFORMED),
        (["1e3"], None, UsageProblem.MALFORMED),
        (["١٢"], None, UsageProblem.MALFORMED),  # non-ASCII digits
        (["99999999999999999"], None, UsageProblem.MALFORMED),
    ],
)
def test_usage_header_is_strict(
    values: list[str], units: int | None, problem: UsageProblem | None
) -> None:
    reading = usage_from_header(values)
    assert (reading.units, reading.problem) == (units, problem)
    if units is not None:
        assert reading.source is UsageSource.HEADER


@pytest.mark.parametrize(
    "body",
    [b'{"a": 1}', b"{", b"{}", b'{"\xc3\xa9": "\xed\xa0\x80"}', b'{"a": [1, 2', b"{\x00", b" {}"],
)
def test_load_json_is_json_loads(body: bytes) -> None:
    """The meter's own decoding (no encoding detection for a `{`) answers as json.loads."""
    try:
        expected: object = json.loads(body)
    except ValueError as exc:
        with pytest.raises(type(exc)):
            load_json(body)
    else:
        assert load_json(body) == expected
