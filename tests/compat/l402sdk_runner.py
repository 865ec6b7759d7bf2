"""Run l402sdk (PyPI `l402sdk`, module `l402`) in its own process and print JSON.

Its Rust core holds the GIL while it pays, so the tests never import it in-process.

    python l402sdk_runner.py rest URL MACAROON_HEX TARGET   # two GETs over LND REST
    python l402sdk_runner.py grpc ADDRESS TLS_CERT MACAROON  # connect over LND gRPC only
"""

from __future__ import annotations

import json
import sys
from typing import Any

import l402


def _response(r: Any) -> dict[str, Any]:
    receipt = r.receipt
    return {
        "status": r.status,
        "paid": r.paid,
        "cached_token": r.cached_token,
        "json": r.json() if r.status == 200 else None,
        "text": r.text if r.status != 200 else None,
        "receipt": json.loads(receipt.to_json()) if receipt is not None else None,
    }


def main(argv: list[str]) -> dict[str, Any]:
    mode = argv[0]
    if mode == "rest":
        url, macaroon_hex, target = argv[1:]
        client = l402.L402Client.with_lnd_rest(
            url, macaroon_hex, budget=l402.Budget(per_request_max=100), max_fee_sats=10
        )
        first = _response(client.get(target))
        second = _response(client.get(target))
        return {"first": first, "second": second, "total_spent": client.total_spent()}
    if mode == "grpc":
        address, tls_cert, macaroon = argv[1:]
        try:
            backend = l402.LndGrpcBackend(address, tls_cert, macaroon)
            info = backend.get_info()
        except Exception as exc:
            return {"ok": False, "error_type": type(exc).__name__, "error": str(exc)}
        return {"ok": True, "pubkey": info.pubkey}
    raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
