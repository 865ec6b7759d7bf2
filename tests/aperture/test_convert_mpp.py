"""`convert-aperture` for Aperture's Payment scheme (MPP) settings: `enablempp`, `mpprealm`,
`enablesessions`, `sessiondepositmultiplier`, `sessionidletimeout` and each service's
`authscheme`, onto `payment:`, `lnd.refund_macaroon` and routes' `schemes:`.

The output is loaded with our own loader and checked with `check-config`; what the route
table then sells is asserted, not the text. Aperture's own behaviour behind each mapping is
observed in tests/aperture/test_mpp_regtest.py and test_mpp_authscheme_regtest.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.aperture.test_convert_aperture import FIXTURES, check_config_passes, convert, lines


def test_mpp_with_sessions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, config, err = convert(tmp_path, capsys, FIXTURES / "mpp.yaml")
    assert code == 0, err  # nothing dropped: every setting has its equivalent
    assert config is not None
    check_config_passes(tmp_path / "routes.yaml", capsys)
    schemes = {route.name: route.schemes for route in config.routes.routes}
    assert schemes == {
        "both": ("l402", "payment"),
        "mpponly": ("payment",),
        "l402only": ("l402",),
        "unmarked": ("l402", "payment"),  # no authscheme: Aperture tried every authenticator
    }
    payment = config.payment
    assert payment.realm == "api.example.com"
    assert payment.sessions.enabled
    # What Aperture did, not what its YAML said: its flag defaults win over the file.
    assert (payment.sessions.deposit_multiplier, payment.sessions.idle_timeout_seconds) == (
        20, 300,
    )  # fmt: skip
    assert config.lightning.refund_macaroon == Path("/srv/lnd/refund.macaroon")
    assert config.lightning.macaroon == Path("/srv/lnd/invoice.macaroon")
    text = (tmp_path / "routes.yaml").read_text()
    (todo,) = [line for line in text.splitlines() if line.startswith("# TODO(payment):")]
    assert "lncli bakemacaroon offchain:read offchain:write --save_to /srv/lnd/refund.macaroon" in (
        todo
    )
    notes = "\n".join(err)
    for expected in (
        "note: authenticator.sessiondepositmultiplier: 5 was not in effect",
        "note: authenticator.sessionidletimeout: 60 was not in effect",
        "note: authenticator.sessionidletimeout: idle sessions are closed and refunded after 300 s",
        "note: authenticator.enablesessions: sessions: open, top-up and close are answered by",
        "SendPaymentSync",
        "a charge buys exactly one request here",
        "note: services[1].authscheme: Payment only",
        "note: services[2].authscheme: L402 only",
        "note: services[3].name: no authscheme",
    ):
        assert expected in notes, expected
    assert not lines(err, "dropped:")


def test_defaults_no_sessions_and_odd_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = """
listenaddr: "127.0.0.1:8081"
insecure: true
dbbackend: sqlite
authenticator:
  lndhost: "127.0.0.1:10009"
  tlspath: /l/tls.cert
  macdir: /l
  enablempp: true
services:
  - {name: a, pathregexp: '^/a$', address: "127.0.0.1:9", protocol: http, price: 2,
     authscheme: MPP}
  - {name: b, pathregexp: '^/b$', address: "127.0.0.1:9", protocol: http, price: 2,
     authscheme: bitcoin}
  - {name: c, pathregexp: '^/c$', address: "127.0.0.1:9", protocol: http, price: 2,
     authscheme: "mpp,l402"}
"""
    code, config, err = convert(tmp_path, capsys, source)
    assert code == 1  # a service that accepted nothing in Aperture: its effect is lost
    assert config is not None
    check_config_passes(tmp_path / "routes.yaml", capsys)
    assert config.payment.realm == "127.0.0.1:8081"  # Aperture's default: its listenaddr
    assert not config.payment.sessions.enabled
    assert config.lightning.refund_macaroon is None  # no sessions, no refunds
    assert "TODO(payment)" not in (tmp_path / "routes.yaml").read_text()
    assert [r.schemes for r in config.routes.routes] == [
        ("l402",), ("l402",), ("l402", "payment"),
    ]  # fmt: skip
    assert [line.split(": ", 2)[1] for line in lines(err, "dropped:")] == [
        "services[0].authscheme", "services[1].authscheme",
    ]  # fmt: skip
    assert "'MPP' names neither l402 nor mpp (Aperture compares case-sensitively)" in "\n".join(err)
    assert (
        "'mpp,l402' is not l402, mpp or l402+mpp; Aperture matched it by substring and "
        "accepted l402 and payment" in "\n".join(err)
    )


def test_without_enablempp_authscheme_and_sessions_change_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = """
listenaddr: "127.0.0.1:8081"
insecure: true
dbbackend: sqlite
authenticator:
  lndhost: "127.0.0.1:10009"
  tlspath: /l/tls.cert
  macdir: /l
  enablesessions: true
  mpprealm: x.example
services:
  - {name: a, pathregexp: '^/a$', address: "127.0.0.1:9", protocol: http, price: 2,
     authscheme: mpp}
"""
    code, config, err = convert(tmp_path, capsys, source)
    assert code == 1  # enablesessions without enablempp: Aperture would not start
    assert config is not None
    check_config_passes(tmp_path / "routes.yaml", capsys)
    assert config.routes.routes[0].schemes == ("l402",)
    assert not config.payment.sessions.enabled
    assert "payment:" not in (tmp_path / "routes.yaml").read_text()
    text = "\n".join(err)
    assert "dropped: authenticator.enablesessions: needs enablempp" in text
    assert "note: authenticator.mpprealm: ignored: enablempp is off" in text
    assert "note: services[0].authscheme: 'mpp' has no effect without authenticator.enablempp" in (
        text
    )
