"""The Payment HTTP authentication scheme (MPP) in the seller, beside L402.

`offers` mints Payment challenges (a charge invoice, a session deposit
invoice) for a 402; `seller.PaymentSeller` admits Payment credentials: a
charge buys one request (a single-use row, like a per-request L402 token), a
session's open, top-up and close are answered by the gateway itself, and a
bearer request is debited against the session's balance (`session.py`);
`refunds.py` pays a closed session's unspent balance once. The wire format
and the rules are the sans-I/O core's (gateway.payment); docs/payment-scheme.md.
"""
