"""`l402-gateway convert-aperture`: Aperture configs (our own fixtures) -> routes.yaml.

Every converted file is loaded with our own loader and, where it matters, the
resulting route table is asked which route (and price) a request gets, so the
tests check Aperture's matching and pricing rules, not the text.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.cli import main
from gateway.config import GatewayConfig, load_config

FIXTURES = Path(__file__).parent / "fixtures"


def convert(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], source: Path | str
) -> tuple[int, GatewayConfig | None, list[str]]:
    """Run the command; return (exit code, loaded output or None, stderr lines)."""
    if isinstance(source, str):
        path = tmp_path / "aperture.yaml"
        path.write_text(source)
    else:
        path = source
    out = tmp_path / "routes.yaml"
    out.unlink(missing_ok=True)
    code = main(["convert-aperture", str(path), "-o", str(out)])
    err = capsys.readouterr().err.splitlines()
    config = load_config(out, check_files=False, environ={}) if out.exists() else None
    return code, config, err


def check_config_passes(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--skip-file-checks", str(path)]) == 0, capsys.readouterr().err
    capsys.readouterr()


def price_for(config: GatewayConfig, host: str, path: str) -> tuple[str, int] | None:
    route = config.routes.match(host, path, "GET")
    return None if route is None else (route.name, route.price_msat // 1000)


def lines(err: list[str], prefix: str) -> list[str]:
    return [line for line in err if line.startswith(prefix)]


def test_ep212_converts_completely(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, config, err = convert(tmp_path, capsys, FIXTURES / "ep212.yaml")
    assert code == 0, err
    assert config is not None
    assert not lines(err, "dropped:")
    check_config_passes(tmp_path / "routes.yaml", capsys)
    assert config.routes.names == ("ep212-premium-signal", "ep212-expensive-signal")
    host = "l402.openagents.com"
    assert price_for(config, host, "/ep212/premium-signal") == ("ep212-premium-signal", 10)
    assert price_for(config, host, "/ep212/expensive-signal") == ("ep212-expensive-signal", 250)
    assert price_for(config, "other.example", "/ep212/premium-signal") is None
    premium = config.routes.routes[0]
    assert premium.upstream == "https://signal-upstream.openagents.example:443"
    assert premium.token_validity_seconds is None
    assert premium.private_invoices is False  # Aperture's invoices carry no route hints
    assert premium.invoice_expiry_seconds == 86_400
    assert str(config.listen.public) == "127.0.0.1:8080"
    assert config.lightning.host == "lnd.internal:10009"
    assert config.lightning.macaroon == Path("/srv/aperture/lnd/invoice.macaroon")
    # A new database on the same server; Aperture's password is never copied.
    assert config.store.url == (
        "postgresql://aperture@db.internal:5432/l402_gateway?sslmode=require"
    )
    text = (tmp_path / "routes.yaml").read_text()
    assert "s3cret" not in text
    assert not any("s3cret" in line for line in err)
    (note,) = [line for line in err if line.startswith("note: postgres:")]
    assert "import-aperture --from postgresql://aperture@db.internal:5432/aperture" in note


def test_grpc_services_convert_completely(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """gRPC needs only a route here: converted, not dropped, exit 0 (docs/grpc.md)."""
    code, config, err = convert(tmp_path, capsys, FIXTURES / "grpc-loop.yaml")
    assert code == 0, err
    assert config is not None
    assert not lines(err, "dropped:")
    check_config_passes(tmp_path / "routes.yaml", capsys)
    text = (tmp_path / "routes.yaml").read_text()
    assert "TODO" not in text
    assert price_for(config, "any", "/looprpc.SwapServer/LoopOutQuote") == ("loop", 1000)
    assert price_for(config, "any", "/poolrpc.ChannelAuctioneer/OrderState") == ("pool", 5)
    assert price_for(config, "any", "/other.Service/Call") is None
    loop, pool = config.routes.by_name("loop"), config.routes.by_name("pool")
    assert loop is not None
    assert pool is not None
    # TLS with ALPN h2 to an https upstream, h2c to an http one (gateway/h2engine).
    assert loop.upstream == "https://127.0.0.1:11009"
    assert loop.upstream_ca_file == Path("/etc/loop/tls.cert")
    assert loop.token_validity_seconds == 86_400
    assert pool.upstream == "http://127.0.0.1:12009"
    (loop_note,) = lines(err, "note: services[0].pathregexp:")
    assert "proxied over HTTP/2 to the upstream over TLS with ALPN h2" in loop_note
    (pool_note,) = lines(err, "note: services[1].pathregexp:")
    assert "over h2c" in pool_note


def test_grpc_swap_server_lists_every_loss(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, config, err = convert(tmp_path, capsys, FIXTURES / "grpc-swap.yaml")
    assert code == 1
    assert config is not None
    check_config_passes(tmp_path / "routes.yaml", capsys)
    dropped = "\n".join(lines(err, "dropped:"))
    for what in ("insecure", "services[0].auth", "services[0].ratelimits"):
        assert f"dropped: {what}:" in dropped, what
    # gRPC itself is not a loss: only the features this gateway lacks are.
    assert "gRPC" not in dropped
    assert "pathregexp" not in dropped
    assert lines(err, "note: services[0].pathregexp: a gRPC service")
    text = (tmp_path / "routes.yaml").read_text()
    assert "TODO(grpc)" not in text
    host = "swap.example.com"
    # Whitelisted method: free; every other method of the service: Aperture's 1 sat.
    assert price_for(config, host, "/looprpc.SwapServer/LoopOutTerms") == ("swap-free", 0)
    assert price_for(config, host, "/looprpc.SwapServer/LoopOutQuote") == ("swap", 1)
    assert price_for(config, "evil.example", "/looprpc.SwapServer/LoopOutTerms") is None
    # Prometheus' listener becomes the admin listener (/metrics).
    assert str(config.listen.admin) == "127.0.0.1:9101"
    swap = config.routes.by_name("swap")
    assert swap is not None
    # Price 0: Aperture minted neither capabilities nor a timeout caveat; neither do we.
    assert swap.token_validity_seconds is None
    assert swap.capabilities == ()
    assert swap.upstream_ca_file == Path("/etc/swap/tls.cert")


def test_messy_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, config, err = convert(tmp_path, capsys, FIXTURES / "messy.yaml")
    assert code == 1
    assert config is not None
    check_config_passes(tmp_path / "routes.yaml", capsys)
    text = "\n".join(err)
    # Renamed services cannot verify the tokens Aperture sold under the old name.
    assert "'Weather API' is not a valid route name" in text
    assert "renamed to 'weather-api'" in text
    assert "renamed to 'weather-api-2'" in text
    assert "services=Weather API:0 and will NOT verify" in text
    assert config.routes.names == ("weather-api", "weather-api-2", "docs")
    # The port is gone from the host pattern (we match host names without ports).
    assert price_for(config, "api.example.com:8081", "/weather/today") == ("weather-api", 21)
    assert price_for(config, "other.example", "/forecast/x") == ("weather-api-2", 5)
    # auth: off is a free route; the identical later service never matched anywhere.
    assert price_for(config, "any", "/docs/intro") == ("docs", 0)
    assert "services[3] 'unreachable': never matched" in text
    assert "dropped: services[4].protocol: 'ftp'" in text
    weather = config.routes.by_name("weather-api")
    assert weather is not None
    headers = dict(weather.upstream_headers)
    assert headers["X-Api-Key"] == "key-with-$-sign"  # a literal $, not an env reference
    assert headers["Authorization"] == "Bearer upstream-token"
    assert weather.forward_authorization is False
    assert "X-Secret" not in headers
    assert "Connection" not in headers
    assert weather.upstream == "http://10.0.0.5:8000/v2"  # rewrite.prefix
    # enablempp: authscheme l402+mpp, and no authscheme at all, took both schemes in Aperture
    assert weather.schemes == ("l402", "payment")
    assert config.routes.routes[1].schemes == ("l402", "payment")
    assert config.payment.realm == ":8081"  # Aperture's default realm: its listenaddr
    assert not config.payment.sessions.enabled
    for expected in (
        "dropped: services[0].constraints",
        "dropped: services[1].dynamicprice.enabled",
        "dropped: services[0].headers.X-Secret",
        "dropped: blocklist",
        "note: authenticator.enablempp: the Payment scheme is sold",
        "dropped: dbbackend: etcd",
        "dropped: listenaddr",
        "note: colour: not an Aperture v0.5.0 setting",
        "note: sqlite.dbfile: not an Aperture v0.5.0 setting",
        "note: authenticator.tlspath: 'tls.cert' is relative",
    ):
        assert expected in text, expected
    assert str(config.listen.public) == "127.0.0.1:8081"  # ":8081" was every interface


def test_whitelist_is_checked_inside_the_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Aperture matches the service first, then lets whitelisted paths through free."""
    source = """
listenaddr: "127.0.0.1:8081"
insecure: true
dbbackend: sqlite
authenticator: {lndhost: "127.0.0.1:10009", tlspath: /l/tls.cert, macdir: /l}
services:
  - name: api
    hostregexp: '^api\\.example$'
    pathregexp: '^/v1/'
    address: "127.0.0.1:9000"
    protocol: http
    price: 7
    timeout: 600
    capabilities: "read,write,read"
    authwhitelistpaths: ['health$', '^/v1/public/']
  - name: rest
    pathregexp: '^/'
    address: "127.0.0.1:9001"
    protocol: http
    price: 2
"""
    code, config, err = convert(tmp_path, capsys, source)
    assert code == 0, err
    assert config is not None
    assert config.routes.names == ("api-free", "api-free-2", "api", "rest")
    host = "api.example"
    assert price_for(config, host, "/v1/health") == ("api-free", 0)
    assert price_for(config, host, "/v1/public/doc") == ("api-free-2", 0)
    assert price_for(config, host, "/v1/private") == ("api", 7)
    # Whitelisted path outside the service's own path: not Aperture's service, so not free.
    assert price_for(config, host, "/health") == ("rest", 2)
    assert price_for(config, "other", "/v1/health") == ("rest", 2)
    api = config.routes.by_name("api")
    assert api is not None
    assert api.token_validity_seconds == 600
    assert api.capabilities == ("read", "write")


def test_catch_all_whitelist_makes_the_service_free(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = """
listenaddr: "127.0.0.1:8081"
insecure: true
dbbackend: sqlite
authenticator: {lndhost: "127.0.0.1:10009", tlspath: /l/tls.cert, macdir: /l}
services:
  - {name: open, pathregexp: '^/open', address: "127.0.0.1:9000", protocol: http,
     price: 9, authwhitelistpaths: ['.*']}
"""
    code, config, err = convert(tmp_path, capsys, source)
    assert code == 0, err
    assert config is not None
    assert price_for(config, "x", "/open/anything") == ("open", 0)
    assert len(config.routes) == 1


def test_authenticator_disabled_means_everything_free(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = """
listenaddr: "127.0.0.1:8081"
insecure: true
dbbackend: sqlite
authenticator: {disable: true}
services:
  - {name: a, pathregexp: '^/a', address: "127.0.0.1:9000", protocol: http, price: 50}
"""
    code, config, err = convert(tmp_path, capsys, source)
    assert code == 0, err
    assert config is not None
    assert price_for(config, "x", "/a") == ("a", 0)
    assert any("authenticator.disable" in line for line in err)


def test_lnc_authenticator_is_dropped_with_placeholders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = """
listenaddr: "127.0.0.1:8081"
insecure: true
dbbackend: sqlite
authenticator: {passphrase: "word word word", mailboxaddress: "mailbox.example:443"}
services:
  - {name: a, pathregexp: '^/a', address: "127.0.0.1:9000", protocol: http, price: 3}
"""
    code, config, err = convert(tmp_path, capsys, source)
    assert code == 1
    assert config is not None
    assert any(line.startswith("dropped: authenticator.passphrase") for line in err)
    assert "TODO(lnd)" in (tmp_path / "routes.yaml").read_text()
    assert not any("word word" in line for line in err)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("- not a mapping\n", "expected a YAML mapping"),
        ("listenaddr: 127.0.0.1:1\nauthenticator: {lndhost: h:1}\n", "no services"),
        ("services: [{name: a}]\n", "authenticator: missing"),
        (
            "authenticator: {lndhost: 'h:1'}\ndbbackend: sqlite\n"
            "services: [{name: a, address: 'h:1', price: -1}]\n",
            "no service could be converted",
        ),
        ("{{{ not yaml", "not YAML"),
    ],
)
def test_unusable_input_exits_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], source: str, message: str
) -> None:
    code, config, err = convert(tmp_path, capsys, source)
    assert code == 2
    assert config is None
    assert message in "\n".join(err)


def test_stdout_output_round_trips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without -o the file goes to stdout, and odd characters survive quoting."""
    source = """
listenaddr: "127.0.0.1:8081"
insecure: true
dbbackend: sqlite
authenticator: {lndhost: "127.0.0.1:10009", tlspath: /l/tls.cert, macdir: /l}
services:
  - name: q
    pathregexp: '^/it''s/\\d+$'
    address: "127.0.0.1:9000"
    protocol: http
    price: 4
    headers: {X-Note: "tab\\there"}
"""
    path = tmp_path / "aperture.yaml"
    path.write_text(source)
    assert main(["convert-aperture", str(path)]) == 0
    out = capsys.readouterr().out
    document = yaml.safe_load(out)
    (route,) = document["routes"]
    assert route["path"] == "^/it's/\\d+$"
    assert route["upstream_headers"] == {"X-Note": "tab\there"}
