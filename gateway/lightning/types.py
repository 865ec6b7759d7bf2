"""Typed results of LND calls: the rest of the project never touches protobuf messages."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class InvoiceState(enum.IntEnum):
    OPEN = 0
    SETTLED = 1
    CANCELED = 2
    ACCEPTED = 3


class WalletState(enum.IntEnum):
    NON_EXISTING = 0
    LOCKED = 1
    UNLOCKED = 2
    RPC_ACTIVE = 3
    SERVER_ACTIVE = 4
    WAITING_TO_START = 255


@dataclass(frozen=True)
class NodeInfo:
    pubkey: str
    alias: str
    block_height: int
    synced_to_chain: bool
    version: str
    num_active_channels: int
    num_peers: int


@dataclass(frozen=True)
class AddedInvoice:
    payment_hash: bytes
    payment_request: str
    add_index: int
    payment_addr: bytes


@dataclass(frozen=True)
class Invoice:
    payment_hash: bytes
    memo: str
    value_msat: int
    amt_paid_msat: int
    state: InvoiceState
    add_index: int
    settle_index: int
    creation_date: int
    settle_date: int
    expiry: int
    private: bool
    num_route_hints: int
    payment_request: str


@dataclass(frozen=True)
class PayReq:
    destination: str
    payment_hash: bytes
    num_msat: int
    timestamp: int
    expiry: int
    description: str
    num_route_hints: int


@dataclass(frozen=True)
class Payment:
    payment_hash: bytes
    preimage: bytes
    value_msat: int
    fee_msat: int

    @property
    def preimage_hex(self) -> str:
        return self.preimage.hex()
