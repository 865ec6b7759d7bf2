"""Old import path of the store's names, for code the store redesign does not own.

`gateway/server/**` (and tests/unit/test_server_auth.py) import `TokenStore`,
`StoreError`, `ReserveResult` and `utc_day` from here. New code imports from
`gateway.store.roles`, `gateway.store.types` and `gateway.store.ledger`; delete
this module once the server does.
"""

from __future__ import annotations

from gateway.store.ledger import utc_day
from gateway.store.roles import Store
from gateway.store.types import PruneCandidate, ReportRow, Reservation, ReserveResult, StoreError

TokenStore = Store

__all__ = [
    "PruneCandidate",
    "ReportRow",
    "Reservation",
    "ReserveResult",
    "StoreError",
    "TokenStore",
    "utc_day",
]
