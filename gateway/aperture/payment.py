"""Aperture's Payment scheme (MPP) settings -> our `payment:` section and routes' `schemes:`.

Facts (docs/payment-scheme.md, section 4; tests/aperture/test_mpp_regtest.py
and test_mpp_authscheme_regtest.py on the real Aperture v0.5.0):

- `authenticator.enablempp` turns the Payment scheme on; `mpprealm` is its
  realm (default: Aperture's `listenaddr`); `enablesessions` adds the session
  intent and needs `enablempp` (Aperture refuses to start otherwise).
- `sessiondepositmultiplier` and `sessionidletimeout` written in the YAML
  file are NOT in effect: Aperture parses its command line again after the
  file and go-flags re-applies their defaults (20 and 300). The conversion
  keeps what Aperture did (20, 300) and says so; only command-line flags set
  them there. Aperture only advertised the idle timeout; here it is enforced.
- A service's `authscheme` only filters which credentials are accepted (the
  402 always carries every scheme's challenges): `l402`, `mpp`, `l402+mpp`;
  none at all tries every authenticator, so with MPP on such a service took
  both. Without `enablempp` the authenticator is L402 alone and `authscheme`
  changes nothing.
- Refunds: Aperture paid them with `macdir`'s admin.macaroon through
  lnrpc SendPaymentSync (which lnd 0.21 no longer serves); here a macaroon
  that may only pay, `lnd.refund_macaroon`, through SendPaymentV2. Sessions
  cannot be enabled without it, so the output names one (a TODO to bake it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from gateway.aperture.notes import Notes
from gateway.aperture.source import Block

APERTURE_MULTIPLIER = 20  # go-flags default, re-applied over the YAML value (observed)
APERTURE_IDLE_TIMEOUT = 300
REFUND_MACAROON = "refund.macaroon"
PLACEHOLDER_DIR = "/etc/l402-gateway/lnd"
BOTH = ("l402", "payment")


@dataclass(frozen=True)
class PaymentOut:
    """What `emit.render` writes for the Payment scheme."""

    realm: str | None
    sessions: bool
    refund_macaroon: str | None  # lnd.refund_macaroon (sessions only)


def convert_payment(
    auth: Block, listenaddr: str, macdir: str, notes: Notes, header: list[str]
) -> PaymentOut | None:
    """The `payment:` section, or None when Aperture did not sell the Payment scheme."""
    mpp = auth.boolean("enablempp")
    sessions = auth.boolean("enablesessions")
    if not mpp:
        if sessions:
            notes.dropped(
                auth.path("enablesessions"),
                "needs enablempp (Aperture refuses to start without it); sessions not enabled",
            )
        for key in ("mpprealm", "sessiondepositmultiplier", "sessionidletimeout"):
            if auth.has(key):
                notes.note(auth.path(key), "ignored: enablempp is off (as in Aperture)")
        return None
    realm = auth.text("mpprealm") or listenaddr or None
    if realm is not None and (any(c in realm for c in '|"\\') or not realm.isprintable()):
        notes.dropped(auth.path("mpprealm"), f"{realm!r} cannot be a realm here; the default used")
        realm = None
    notes.note(
        auth.path("enablempp"),
        "the Payment scheme is sold on the routes whose service accepted it (schemes:); "
        "a charge buys exactly one request here (Aperture accepted the same charge "
        "credential again until its challenge expired) and must pay the route's price",
    )
    if not sessions:
        return PaymentOut(realm, False, None)
    _session_settings(auth, notes)
    directory = macdir or PLACEHOLDER_DIR
    refund = str(PurePosixPath(directory) / REFUND_MACAROON)
    header.append(
        f"TODO(payment): sessions refund unspent deposits with lnd.refund_macaroon ({refund}):"
        " bake a macaroon that may pay and nothing else on the LND host: lncli bakemacaroon"
        f" offchain:read offchain:write --save_to {refund} (Aperture paid refunds with"
        " admin.macaroon)"
    )
    notes.note(
        auth.path("enablesessions"),
        "sessions: open, top-up and close are answered by this gateway (Aperture forwarded "
        "them upstream), refunds are paid once with lnd.refund_macaroon through "
        "SendPaymentV2 (Aperture used admin.macaroon and SendPaymentSync, which lnd 0.21 "
        "no longer serves: its refunds failed), and the result is in the close's answer",
    )
    return PaymentOut(realm, True, refund)


def _session_settings(auth: Block, notes: Notes) -> None:
    for key, effective in (
        ("sessiondepositmultiplier", APERTURE_MULTIPLIER),
        ("sessionidletimeout", APERTURE_IDLE_TIMEOUT),
    ):
        if auth.has(key) and auth.integer(key) != effective:
            notes.note(
                auth.path(key),
                f"{auth.integer(key)} was not in effect: Aperture v0.5.0 re-applies its flag "
                f"default ({effective}) over the YAML file; converted to {effective}, what it "
                "did (write yours if that was the intent, or if Aperture ran with "
                f"--authenticator.{key}=)",
            )
    notes.note(
        auth.path("sessionidletimeout"),
        f"idle sessions are closed and refunded after {APERTURE_IDLE_TIMEOUT} s here; "
        "Aperture only advertised the timeout",
    )


def service_schemes(block: Block, mpp: bool, notes: Notes) -> tuple[str, ...] | None:
    """A service's `schemes:` (None: the default, L402 only), as Aperture matched it: an
    authenticator takes part when its tag (`l402`, `mpp`) is a substring of the value,
    case-sensitively; an empty value takes every authenticator."""
    where = block.path("authscheme")
    written = block.text("authscheme")
    if not mpp:
        if written not in ("", "l402"):
            notes.note(where, f"{written!r} has no effect without authenticator.enablempp "
                              "(Aperture accepted L402 only); converted to L402")  # fmt: skip
        return None
    if not written:
        notes.note(
            block.path("name"),
            "no authscheme: with enablempp Aperture accepted both L402 and Payment "
            "credentials here (an empty scheme tries every authenticator); schemes: "
            "[l402, payment]",
        )
        return BOTH
    accepted = tuple(ours for ours, tag in (("l402", "l402"), ("payment", "mpp")) if tag in written)
    if not accepted:
        notes.dropped(
            where,
            f"{written!r} names neither l402 nor mpp (Aperture compares case-sensitively): "
            "Aperture accepted no credential on this service; converted to L402",
        )
        return None
    if written not in ("l402", "mpp", "l402+mpp"):
        notes.note(where, f"{written!r} is not l402, mpp or l402+mpp; Aperture matched it by "
                          f"substring and accepted {' and '.join(accepted)}")  # fmt: skip
    if accepted == ("l402",):
        notes.note(where, "L402 only: this route offers no Payment challenges (Aperture's "
                          "402 carried them and then refused their credentials)")  # fmt: skip
        return None
    if accepted == ("payment",):
        notes.note(where, "Payment only: this route mints no macaroon (Aperture's 402 carried "
                          "L402 challenges and then refused their tokens)")  # fmt: skip
    return accepted
