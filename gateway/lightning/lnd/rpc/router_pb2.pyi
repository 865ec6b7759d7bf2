from . import lightning_pb2 as _lightning_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class SendPaymentRequest(_message.Message):
    __slots__ = ("amt", "payment_request", "timeout_seconds", "fee_limit_sat", "amt_msat", "fee_limit_msat", "allow_self_payment", "max_parts", "no_inflight_updates")
    AMT_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_REQUEST_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FEE_LIMIT_SAT_FIELD_NUMBER: _ClassVar[int]
    AMT_MSAT_FIELD_NUMBER: _ClassVar[int]
    FEE_LIMIT_MSAT_FIELD_NUMBER: _ClassVar[int]
    ALLOW_SELF_PAYMENT_FIELD_NUMBER: _ClassVar[int]
    MAX_PARTS_FIELD_NUMBER: _ClassVar[int]
    NO_INFLIGHT_UPDATES_FIELD_NUMBER: _ClassVar[int]
    amt: int
    payment_request: str
    timeout_seconds: int
    fee_limit_sat: int
    amt_msat: int
    fee_limit_msat: int
    allow_self_payment: bool
    max_parts: int
    no_inflight_updates: bool
    def __init__(self, amt: _Optional[int] = ..., payment_request: _Optional[str] = ..., timeout_seconds: _Optional[int] = ..., fee_limit_sat: _Optional[int] = ..., amt_msat: _Optional[int] = ..., fee_limit_msat: _Optional[int] = ..., allow_self_payment: _Optional[bool] = ..., max_parts: _Optional[int] = ..., no_inflight_updates: _Optional[bool] = ...) -> None: ...
