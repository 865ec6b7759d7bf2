"""What the real Aperture v0.5.0 answered on regtest, and where the docs state it.

`test_wire_regtest.py` sends one paid credential, spelled each way below, to
the real Aperture and checks it answers these statuses (and that this
gateway answers 200 to all); `test_docs_match_wire.py` checks that
docs/compatibility.md says the same: "same" where Aperture answered 200, a
difference ("extra" or "different", naming the 402) where it did not.
"""

from __future__ import annotations

from typing import NamedTuple


class Observed(NamedTuple):
    doc_row: str  # how the first cell of its row in docs/compatibility.md begins
    aperture_status: int


SPELLINGS = {
    "L402 mac:pre": Observed("`Authorization: L402 <macaroon>:<preimage>` (or `LSAT`)", 200),
    "LSAT mac:pre": Observed("`Authorization: L402 <macaroon>:<preimage>` (or `LSAT`)", 200),
    "Grpc-Metadata-Macaroon": Observed("`Grpc-Metadata-Macaroon` / `Macaroon`", 200),
    "upper-case preimage hex": Observed("upper-case (or mixed-case) preimage hex", 402),
    'macaroon="", preimage=""': Observed('`Authorization: L402 macaroon="…", preimage="…"`', 402),
    "Token (bLIP-26)": Observed("bLIP-26 `Token` / `Grpc-Metadata-Token`", 402),
    "Grpc-Metadata-Token": Observed("bLIP-26 `Token` / `Grpc-Metadata-Token`", 402),
    "lower-case l402 scheme": Observed("lower-case scheme", 402),
    "L402 then a Bearer Authorization": Observed("several `Authorization` headers", 402),
}
PLAIN_HTTP2 = Observed("plain (non-gRPC) HTTP/2 request", 402)  # here: 505
