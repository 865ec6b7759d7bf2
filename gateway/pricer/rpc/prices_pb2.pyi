from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class GetPriceRequest(_message.Message):
    __slots__ = ("path", "http_request_text")
    PATH_FIELD_NUMBER: _ClassVar[int]
    HTTP_REQUEST_TEXT_FIELD_NUMBER: _ClassVar[int]
    path: str
    http_request_text: str
    def __init__(self, path: _Optional[str] = ..., http_request_text: _Optional[str] = ...) -> None: ...

class GetPriceResponse(_message.Message):
    __slots__ = ("price_sats",)
    PRICE_SATS_FIELD_NUMBER: _ClassVar[int]
    price_sats: int
    def __init__(self, price_sats: _Optional[int] = ...) -> None: ...

class ChallengeMintedRequest(_message.Message):
    __slots__ = ("path", "http_request_text", "token_id", "price_sats", "service_name")
    PATH_FIELD_NUMBER: _ClassVar[int]
    HTTP_REQUEST_TEXT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_SATS_FIELD_NUMBER: _ClassVar[int]
    SERVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    path: str
    http_request_text: str
    token_id: str
    price_sats: int
    service_name: str
    def __init__(self, path: _Optional[str] = ..., http_request_text: _Optional[str] = ..., token_id: _Optional[str] = ..., price_sats: _Optional[int] = ..., service_name: _Optional[str] = ...) -> None: ...

class ChallengeMintedResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AuthorizeRequestRequest(_message.Message):
    __slots__ = ("path", "http_request_text", "token_id", "service_name")
    PATH_FIELD_NUMBER: _ClassVar[int]
    HTTP_REQUEST_TEXT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    path: str
    http_request_text: str
    token_id: str
    service_name: str
    def __init__(self, path: _Optional[str] = ..., http_request_text: _Optional[str] = ..., token_id: _Optional[str] = ..., service_name: _Optional[str] = ...) -> None: ...

class AuthorizeRequestResponse(_message.Message):
    __slots__ = ("allowed", "price_sats", "reason", "reserved_estimate")
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    PRICE_SATS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RESERVED_ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    allowed: bool
    price_sats: int
    reason: str
    reserved_estimate: int
    def __init__(self, allowed: _Optional[bool] = ..., price_sats: _Optional[int] = ..., reason: _Optional[str] = ..., reserved_estimate: _Optional[int] = ...) -> None: ...

class ReportUsageRequest(_message.Message):
    __slots__ = ("token_id", "path", "service_name", "http_status", "content_type", "complete", "response_tail", "content_encoding", "reserved_estimate")
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    SERVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    HTTP_STATUS_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_TAIL_FIELD_NUMBER: _ClassVar[int]
    CONTENT_ENCODING_FIELD_NUMBER: _ClassVar[int]
    RESERVED_ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    token_id: str
    path: str
    service_name: str
    http_status: int
    content_type: str
    complete: bool
    response_tail: bytes
    content_encoding: str
    reserved_estimate: int
    def __init__(self, token_id: _Optional[str] = ..., path: _Optional[str] = ..., service_name: _Optional[str] = ..., http_status: _Optional[int] = ..., content_type: _Optional[str] = ..., complete: _Optional[bool] = ..., response_tail: _Optional[bytes] = ..., content_encoding: _Optional[str] = ..., reserved_estimate: _Optional[int] = ...) -> None: ...

class ReportUsageResponse(_message.Message):
    __slots__ = ("debited_sats", "remaining_sats")
    DEBITED_SATS_FIELD_NUMBER: _ClassVar[int]
    REMAINING_SATS_FIELD_NUMBER: _ClassVar[int]
    debited_sats: int
    remaining_sats: int
    def __init__(self, debited_sats: _Optional[int] = ..., remaining_sats: _Optional[int] = ...) -> None: ...
