"""The shop's FastAPI app for `uvicorn tests.embed.rootpath_app:app --root-path /api`.

Built at import from environment variables the test sets (the seller's LND
and the store), so the real uvicorn command line serves it in its own process.
"""

from __future__ import annotations

import os

from gateway.embed import L402, LndSettings
from tests.embed.shop import ROUTES, Seen, fastapi_app

seller = L402.from_routes(
    ROUTES,
    lnd=LndSettings(
        os.environ["L402_TEST_LND_HOST"],
        os.environ["L402_TEST_LND_TLS_CERT"],
        os.environ["L402_TEST_LND_MACAROON"],
    ),
    store_url=os.environ["L402_TEST_STORE_URL"],
    options={"challenge_rate_limit": {"per_minute": 0}},
)
app = fastapi_app(seller, Seen())
