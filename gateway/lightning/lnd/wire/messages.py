"""LND's messages the seller sends and reads, field numbers as in protos/lightning.proto
(LND v0.21.2-beta's lnrpc, wire-compatible): requests out as bytes, answers in as the
neutral types of gateway.lightning.types."""

from __future__ import annotations

from gateway.lightning.lnd.wire.protobuf import (
    WireError,
    bytes_field,
    int_field,
    last_bytes,
    last_int,
    last_string,
    parse,
    repeated_bytes,
    string_field,
)
from gateway.lightning.types import AddedInvoice, Invoice, InvoiceState, NodeInfo, WalletState

# The RPCs (gRPC paths) and their message fields.
ADD_INVOICE = "/lnrpc.Lightning/AddInvoice"
LOOKUP_INVOICE = "/lnrpc.Lightning/LookupInvoice"
LIST_INVOICES = "/lnrpc.Lightning/ListInvoices"
SUBSCRIBE_INVOICES = "/lnrpc.Lightning/SubscribeInvoices"
GET_INFO = "/lnrpc.Lightning/GetInfo"
GET_STATE = "/lnrpc.State/GetState"

# Invoice
_MEMO, _R_HASH, _CREATION_DATE, _SETTLE_DATE, _PAYMENT_REQUEST = 1, 4, 7, 8, 9
_EXPIRY, _ROUTE_HINTS, _PRIVATE, _ADD_INDEX, _SETTLE_INDEX = 11, 14, 15, 16, 17
_AMT_PAID_MSAT, _STATE, _VALUE_MSAT = 20, 21, 23


def add_invoice_request(value_msat: int, memo: str, expiry: int, private: bool) -> bytes:
    """An `Invoice` to create: amount in millisatoshis, memo, expiry seconds, route hints."""
    return (
        string_field(_MEMO, memo)
        + int_field(_EXPIRY, expiry)
        + int_field(_PRIVATE, int(private))
        + int_field(_VALUE_MSAT, value_msat)
    )


def added_invoice(data: bytes) -> AddedInvoice:
    """`AddInvoiceResponse`: r_hash 1, payment_request 2, add_index 16, payment_addr 17."""
    f = parse(data)
    payment_hash = last_bytes(f, 1)
    if len(payment_hash) != 32:
        raise WireError(f"AddInvoiceResponse: a {len(payment_hash)}-byte payment hash")
    return AddedInvoice(
        payment_hash=payment_hash,
        payment_request=last_string(f, 2),
        add_index=last_int(f, 16),
        payment_addr=last_bytes(f, 17),
    )


def lookup_invoice_request(payment_hash: bytes) -> bytes:
    """`PaymentHash`: r_hash is field 2 (field 1 is the deprecated hex string)."""
    return bytes_field(2, payment_hash)


def invoice(data: bytes) -> Invoice:
    f = parse(data)
    try:
        state = InvoiceState(last_int(f, _STATE))
    except ValueError as exc:
        raise WireError(f"Invoice: unknown state {last_int(f, _STATE)}") from exc
    return Invoice(
        payment_hash=last_bytes(f, _R_HASH),
        memo=last_string(f, _MEMO),
        value_msat=last_int(f, _VALUE_MSAT, signed=True),
        amt_paid_msat=last_int(f, _AMT_PAID_MSAT, signed=True),
        state=state,
        add_index=last_int(f, _ADD_INDEX),
        settle_index=last_int(f, _SETTLE_INDEX),
        creation_date=last_int(f, _CREATION_DATE, signed=True),
        settle_date=last_int(f, _SETTLE_DATE, signed=True),
        expiry=last_int(f, _EXPIRY, signed=True),
        private=bool(last_int(f, _PRIVATE)),
        num_route_hints=len(f.get(_ROUTE_HINTS, [])),
        payment_request=last_string(f, _PAYMENT_REQUEST),
    )


def list_invoices_request(
    index_offset: int,
    num_max: int,
    *,
    pending_only: bool = False,
    reversed_order: bool = False,
    creation_date_start: int = 0,
) -> bytes:
    """`ListInvoiceRequest`: pending_only 1, index_offset 4, num_max_invoices 5, reversed 6,
    creation_date_start 7."""
    return (
        int_field(1, int(pending_only))
        + int_field(4, index_offset)
        + int_field(5, num_max)
        + int_field(6, int(reversed_order))
        + int_field(7, creation_date_start)
    )


def invoice_list(data: bytes) -> list[Invoice]:
    """`ListInvoiceResponse`: the invoices (field 1)."""
    return [invoice(item) for item in repeated_bytes(parse(data), 1)]


def subscription_request(add_index: int, settle_index: int) -> bytes:
    """`InvoiceSubscription`: add_index 1, settle_index 2."""
    return int_field(1, add_index) + int_field(2, settle_index)


def node_info(data: bytes) -> NodeInfo:
    """`GetInfoResponse`: the fields of NodeInfo."""
    f = parse(data)
    return NodeInfo(
        pubkey=last_string(f, 1),
        alias=last_string(f, 2),
        num_active_channels=last_int(f, 4),
        num_peers=last_int(f, 5),
        block_height=last_int(f, 6),
        synced_to_chain=bool(last_int(f, 9)),
        version=last_string(f, 14),
    )


def wallet_state(data: bytes) -> WalletState:
    """`GetStateResponse`: state 1."""
    value = last_int(parse(data), 1)
    try:
        return WalletState(value)
    except ValueError as exc:
        raise WireError(f"GetStateResponse: unknown state {value}") from exc
