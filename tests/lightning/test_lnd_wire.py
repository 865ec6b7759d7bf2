"""The seller's LND wire without sockets: protobuf fields against the protobuf library's own
encoding of LND's messages, gRPC message framing and status, HTTP/2 frames and HPACK."""

from __future__ import annotations

import hpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.lightning.lnd.rpc import lightning_pb2, state_pb2
from gateway.lightning.lnd.wire import frames, grpcframe, messages, protobuf
from gateway.lightning.types import InvoiceState, WalletState

int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
uint64 = st.integers(min_value=0, max_value=2**64 - 1)
text = st.text(max_size=200)


@given(value=st.integers(0, 2**62), memo=text, expiry=st.integers(0, 2**40), private=st.booleans())
def test_add_invoice_request_is_what_protobuf_reads(
    value: int, memo: str, expiry: int, private: bool
) -> None:
    parsed = lightning_pb2.Invoice.FromString(
        messages.add_invoice_request(value, memo, expiry, private)
    )
    assert (parsed.value_msat, parsed.memo, parsed.expiry, parsed.private) == (
        value,
        memo,
        expiry,
        private,
    )


@given(
    memo=text,
    r_hash=st.binary(max_size=64),
    value_msat=int64,
    amt_paid_msat=int64,
    state=st.sampled_from(list(InvoiceState)),
    add_index=uint64,
    settle_index=uint64,
    dates=st.tuples(int64, int64, int64),
    private=st.booleans(),
    hints=st.integers(0, 3),
    request=text,
)
def test_invoice_reads_what_protobuf_writes(
    memo: str,
    r_hash: bytes,
    value_msat: int,
    amt_paid_msat: int,
    state: InvoiceState,
    add_index: int,
    settle_index: int,
    dates: tuple[int, int, int],
    private: bool,
    hints: int,
    request: str,
) -> None:
    source = lightning_pb2.Invoice(
        memo=memo,
        r_hash=r_hash,
        value_msat=value_msat,
        amt_paid_msat=amt_paid_msat,
        state=state.name,
        add_index=add_index,
        settle_index=settle_index,
        creation_date=dates[0],
        settle_date=dates[1],
        expiry=dates[2],
        private=private,
        payment_request=request,
        route_hints=[lightning_pb2.RouteHint() for _ in range(hints)],
    )
    invoice = messages.invoice(source.SerializeToString())
    assert invoice.memo == memo
    assert invoice.payment_hash == r_hash
    assert (invoice.value_msat, invoice.amt_paid_msat) == (value_msat, amt_paid_msat)
    assert invoice.state is state
    assert (invoice.add_index, invoice.settle_index) == (add_index, settle_index)
    assert (invoice.creation_date, invoice.settle_date, invoice.expiry) == dates
    assert invoice.private is private
    assert invoice.num_route_hints == hints
    assert invoice.payment_request == request


def test_added_invoice_list_state_and_info_from_protobuf() -> None:
    added = lightning_pb2.AddInvoiceResponse(
        r_hash=b"\x07" * 32, payment_request="lnbcrt1", add_index=9, payment_addr=b"\x01" * 32
    )
    got = messages.added_invoice(added.SerializeToString())
    assert (got.payment_hash, got.payment_request, got.add_index) == (b"\x07" * 32, "lnbcrt1", 9)
    assert got.payment_addr == b"\x01" * 32
    page = lightning_pb2.ListInvoiceResponse(
        invoices=[lightning_pb2.Invoice(memo=f"m{i}", add_index=i + 1) for i in range(3)],
        last_index_offset=3,
    )
    assert [(i.memo, i.add_index) for i in messages.invoice_list(page.SerializeToString())] == [
        ("m0", 1),
        ("m1", 2),
        ("m2", 3),
    ]
    state = state_pb2.GetStateResponse(state=state_pb2.RPC_ACTIVE).SerializeToString()
    assert messages.wallet_state(state) is WalletState.RPC_ACTIVE
    info = lightning_pb2.GetInfoResponse(
        identity_pubkey="02ab", alias="seller", block_height=120, synced_to_chain=True
    )
    node = messages.node_info(info.SerializeToString())
    assert (node.pubkey, node.alias, node.block_height, node.synced_to_chain) == (
        "02ab",
        "seller",
        120,
        True,
    )


def test_an_answer_with_a_wrong_hash_length_or_state_is_refused() -> None:
    short = lightning_pb2.AddInvoiceResponse(r_hash=b"\x07" * 31).SerializeToString()
    with pytest.raises(protobuf.WireError, match="31-byte"):
        messages.added_invoice(short)
    with pytest.raises(protobuf.WireError, match="unknown state"):
        messages.invoice(protobuf.int_field(21, 9))


@given(
    payment_hash=st.binary(min_size=32, max_size=32),
    offset=uint64,
    count=uint64,
    flags=st.tuples(st.booleans(), st.booleans()),
    start=uint64,
    settle=uint64,
)
def test_requests_are_what_protobuf_reads(
    payment_hash: bytes,
    offset: int,
    count: int,
    flags: tuple[bool, bool],
    start: int,
    settle: int,
) -> None:
    lookup = lightning_pb2.PaymentHash.FromString(messages.lookup_invoice_request(payment_hash))
    assert lookup.r_hash == payment_hash
    listing = lightning_pb2.ListInvoiceRequest.FromString(
        messages.list_invoices_request(
            offset, count, pending_only=flags[0], reversed_order=flags[1], creation_date_start=start
        )
    )
    assert (listing.index_offset, listing.num_max_invoices) == (offset, count)
    assert (listing.pending_only, listing.reversed, listing.creation_date_start) == (*flags, start)
    sub = lightning_pb2.InvoiceSubscription.FromString(messages.subscription_request(start, settle))
    assert (sub.add_index, sub.settle_index) == (start, settle)


def test_unknown_fields_of_every_wire_type_are_skipped() -> None:
    fixed64 = protobuf.varint(90 << 3 | 1) + b"\x00" * 8
    fixed32 = protobuf.varint(91 << 3 | 5) + b"\x00" * 4
    data = protobuf.string_field(1, "memo") + fixed64 + fixed32 + protobuf.int_field(92, 5)
    fields = protobuf.parse(data)
    assert protobuf.last_string(fields, 1) == "memo"
    assert protobuf.last_int(fields, 92) == 5


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x08", "truncated"),  # field 1 varint, value missing
        (b"\x08" + b"\xff" * 10 + b"\x01", "over-long"),
        (b"\x0a\x05abc", "past the end"),
        (b"\x0b", "wire type 3"),  # start group
        (b"\x00\x01", "field number 0"),
        (b"\x09\x00\x00", "fixed-width"),
    ],
)
def test_malformed_messages_are_wire_errors(data: bytes, why: str) -> None:
    with pytest.raises(protobuf.WireError, match=why):
        protobuf.parse(data)


def test_a_field_of_the_wrong_wire_type_is_a_wire_error() -> None:
    with pytest.raises(protobuf.WireError):
        messages.invoice(protobuf.string_field(21, "x"))  # state sent as bytes
    with pytest.raises(protobuf.WireError):
        messages.invoice(protobuf.bytes_field(1, b"\xff\xfe"))  # memo not UTF-8


# -- gRPC framing ------------------------------------------------------------------------


def test_messages_split_and_joined_arbitrarily_come_out_whole() -> None:
    payloads = [b"", b"a", b"b" * 70_000, b"c" * 3]
    stream = b"".join(grpcframe.message(p) for p in payloads)
    reader = grpcframe.MessageReader()
    for i in range(0, len(stream), 7):
        reader.feed(stream[i : i + 7])
    assert list(reader.messages) == payloads
    assert not reader.partial
    reader.feed(grpcframe.message(b"xyz")[:4])
    assert reader.partial


def test_compressed_or_oversized_messages_are_refused() -> None:
    with pytest.raises(protobuf.WireError, match="compressed"):
        grpcframe.MessageReader().feed(b"\x01\x00\x00\x00\x00")
    with pytest.raises(protobuf.WireError, match="limit"):
        grpcframe.MessageReader(limit=10).feed(b"\x00\x00\x00\x00\x0b")


def test_status_from_trailers() -> None:
    assert grpcframe.status_of([("grpc-status", "0")]) == ("OK", "")
    assert grpcframe.status_of(
        [("grpc-status", "2"), ("grpc-message", "permission%20denied%0A%C3%A9")]
    ) == ("UNKNOWN", "permission denied\né")
    assert grpcframe.status_of([("grpc-status", "99")]) == ("UNKNOWN", "")
    assert grpcframe.status_of([("grpc-status", "x")]) == ("UNKNOWN", "")
    assert grpcframe.status_of([(":status", "200")]) is None


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(10.0, "10000000u"), (0.0, "1u"), (100.0, "100000m"), (10**6, "1000000S"), (1e9, "16666666M")],
)
def test_timeout_value_has_at_most_eight_digits(seconds: float, expected: str) -> None:
    assert grpcframe.timeout_value(seconds) == expected


@given(st.floats(min_value=0, max_value=1e10, allow_nan=False))
def test_timeout_value_is_never_longer_than_asked(seconds: float) -> None:
    value = grpcframe.timeout_value(seconds)
    digits, unit = value[:-1], value[-1]
    assert 1 <= len(digits) <= 8
    scale = {"u": 1e-6, "m": 1e-3, "S": 1.0, "M": 60.0, "H": 3600.0}[unit]
    assert int(digits) * scale <= max(seconds, scale) * (1 + 1e-9)


# -- HTTP/2 frames and HPACK -------------------------------------------------------------


def test_frames_come_out_whole_from_any_split() -> None:
    wire = frames.frame(frames.DATA, frames.END_STREAM, 3, b"hello") + frames.settings(
        {frames.INITIAL_WINDOW_SIZE: 1 << 20}
    )
    reader = frames.FrameReader()
    got = []
    for i in range(len(wire)):
        got += reader.feed(wire[i : i + 1])
    assert got[0] == (frames.DATA, frames.END_STREAM, 3, b"hello")
    assert got[1][0] == frames.SETTINGS
    assert frames.parse_settings(got[1][3]) == {frames.INITIAL_WINDOW_SIZE: 1 << 20}


def test_an_oversized_frame_is_a_frame_size_error() -> None:
    reader = frames.FrameReader(max_size=16)
    with pytest.raises(frames.ProtocolError) as caught:
        reader.feed(frames.frame(frames.DATA, 0, 1, b"x" * 17))
    assert caught.value.code == frames.FRAME_SIZE_ERROR


def test_padding_and_priority_are_removed() -> None:
    padded = bytes([3]) + b"data" + b"\x00" * 3
    assert frames.unpad(frames.DATA, frames.PADDED, padded) == b"data"
    prioritized = b"\x00\x00\x00\x01\x10" + b"block"
    assert frames.unpad(frames.HEADERS, frames.PRIORITY_FLAG, prioritized) == b"block"
    with pytest.raises(frames.ProtocolError):
        frames.unpad(frames.DATA, frames.PADDED, bytes([9]) + b"ab")


@pytest.mark.parametrize(
    "payload",
    [b"\x00\x04\x80\x00\x00\x00", b"\x00\x05\x00\x00\x10\x00", b"\x00\x02\x00\x00\x00\x02", b"1"],
)
def test_bad_settings_are_protocol_errors(payload: bytes) -> None:
    with pytest.raises(frames.ProtocolError):
        frames.parse_settings(payload)


@pytest.mark.parametrize("length", [0, 1, 14, 15, 16, 126, 127, 128, 300, 5000])
def test_request_header_blocks_decode_as_sent(length: int) -> None:
    value = "v" * length
    block = (
        frames.indexed(frames.METHOD_POST)
        + frames.indexed(frames.SCHEME_HTTPS)
        + frames.literal(frames.PATH, "/lnrpc.Lightning/AddInvoice")
        + frames.literal(frames.CONTENT_TYPE, "application/grpc")
        + frames.literal("x-long", value)
        + frames.literal("macaroon", "0201abcd", sensitive=True)
    )
    decoded = list(hpack.Decoder().decode(block))
    pairs: list[tuple[object, object]] = [(n, v) for n, v in decoded]
    assert pairs == [
        (":method", "POST"),
        (":scheme", "https"),
        (":path", "/lnrpc.Lightning/AddInvoice"),
        ("content-type", "application/grpc"),
        ("x-long", value),
        ("macaroon", "0201abcd"),
    ]
    assert isinstance(decoded[-1], hpack.NeverIndexedHeaderTuple)  # a credential


def test_answers_keep_the_servers_dynamic_table_across_blocks() -> None:
    encoder = hpack.Encoder()
    decoder = frames.HeaderDecoder()
    fields = [(":status", "200"), ("content-type", "application/grpc")]
    first, second = encoder.encode(fields), encoder.encode(fields)
    assert len(second) < len(first)  # the second refers to the table
    assert decoder.decode(first) == fields
    assert decoder.decode(second) == fields
    with pytest.raises(frames.ProtocolError):
        frames.HeaderDecoder().decode(b"\xff\xff\xff\xff")
