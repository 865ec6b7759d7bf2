"""routes.yaml loading: the shipped file, defaults, and located errors."""

from __future__ import annotations

import ipaddress
import textwrap
from pathlib import Path

import pytest

from gateway.config import ConfigError, ConfigErrors, Listener, TokenMode, load_config

REPO = Path(__file__).resolve().parents[2]

MINIMAL = """\
lnd:
  tls_cert: tls.cert
  macaroon: invoice.macaroon
routes:
  - name: signal
    path: '^/signal$'
    upstream: "https://upstream.example/base"
    price_sats: 10
"""


def write(tmp_path: Path, text: str, *, files: bool = True) -> Path:
    if files:
        (tmp_path / "tls.cert").write_text("cert")
        (tmp_path / "invoice.macaroon").write_bytes(b"mac")
    path = tmp_path / "routes.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def line_of(path: Path, needle: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


def errors_of(path: Path, **kwargs: object) -> list[ConfigError]:
    with pytest.raises(ConfigErrors) as info:
        load_config(path, **kwargs)  # type: ignore[arg-type]
    return list(info.value.errors)


def only_error(path: Path, **kwargs: object) -> ConfigError:
    errors = errors_of(path, **kwargs)
    assert len(errors) == 1, [str(e) for e in errors]
    return errors[0]


def test_shipped_config_loads() -> None:
    config = load_config(REPO / "config" / "routes.yaml", check_files=False)
    premium = config.routes.match("l402.openagents.com", "/ep212/premium-signal", "GET")
    expensive = config.routes.match("l402.openagents.com", "/ep212/expensive-signal", "GET")
    assert premium is not None
    assert expensive is not None
    assert (premium.name, premium.price_msat) == ("ep212-premium-signal", 10_000)
    assert (expensive.name, expensive.price_msat) == ("ep212-expensive-signal", 250_000)
    for route in (premium, expensive):
        assert route.token_mode is TokenMode.REUSABLE
        assert route.token_validity_seconds is None
        assert route.private_invoices is True
        assert route.forward_authorization is True
        assert route.upstream.startswith("https://")
    assert config.lightning.tls_cert == Path("/etc/l402-gateway/lnd/tls.cert")
    assert config.lightning.macaroon.name == "invoice.macaroon"
    assert config.routes.match("evil.example", "/ep212/premium-signal", "GET") is None


def test_shipped_config_names_missing_lnd_files() -> None:
    path = REPO / "config" / "routes.yaml"
    if Path("/etc/l402-gateway/lnd/tls.cert").exists():
        pytest.skip("this machine has the production LND files")
    errors = errors_of(path)
    by_field = {e.field: e for e in errors}
    assert set(by_field) == {"lnd.tls_cert", "lnd.macaroon", "admin.token_file"}
    assert by_field["lnd.tls_cert"].line == line_of(path, "tls_cert:")
    assert "file not found" in by_field["lnd.tls_cert"].message
    assert "file not found" in by_field["admin.token_file"].message


def test_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.listen.public == Listener("127.0.0.1", 8080)
    assert config.listen.admin == Listener("127.0.0.1", 8402)
    assert config.trusted_proxies == (
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("::1/128"),
    )
    assert config.lightning.host == "127.0.0.1:10009"
    assert config.lightning.tls_cert == tmp_path / "tls.cert"  # relative to the config file
    assert config.lightning.timeout_seconds == 5.0
    assert config.store.url == "sqlite:///var/lib/l402-gateway/tokens.db"
    assert config.verified_cache_size == 10_000
    (route,) = config.routes.routes
    assert route.methods is None
    assert route.host is None
    assert route.memo == "L402 signal"  # the memo LND gets when none is configured
    assert route.invoice_expiry_seconds == 3600
    assert route.upstream_timeout_seconds == 30.0
    assert route.max_body_bytes == 1_048_576
    assert (route.private_invoices, route.forward_authorization) == (True, True)
    assert route.single_use is False


def test_relative_sqlite_store_resolves_against_config_dir(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "store: {url: 'sqlite:state/tokens.db'}\n")
    assert load_config(path).store.url == f"sqlite://{tmp_path}/state/tokens.db"


def test_error_string_format(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("price_sats: 10", "price_sats: -1"))
    error = only_error(path)
    assert str(error) == f"{path}:8: routes[0].price_sats: must be >= 0"


@pytest.mark.parametrize(
    ("old", "new", "needle", "field", "message"),
    [
        ("price_sats: 10", "price_sats: -1", "price_sats", "routes[0].price_sats", ">= 0"),
        ("price_sats: 10", "price_sats: true", "price_sats", "routes[0].price_sats", "integer"),
        ("price_sats: 10", "price_sats: 10\n    price_msats: 5", "price_msats",
         "routes[0].price_sats", "only one of"),
        ("    price_sats: 10\n", "", "- name", "routes[0].price_sats", "exactly one of"),
        ("'^/signal$'", "'^/sig(nal$'", "path:", "routes[0].path", "bad regex"),
        ("https://upstream", "ftp://upstream", "upstream:", "routes[0].upstream", "http or https"),
        ("https://upstream.example/base", "https://u:p@upstream.example/",
         "upstream:", "routes[0].upstream", "credentials"),
        ("    upstream: \"https://upstream.example/base\"\n", "", "- name",
         "routes[0].upstream", "required"),
        ("name: signal", "name: Signal!", "name:", "routes[0].name", "must match"),
        ("price_sats: 10", "price_sats: 10\n    colour: blue", "colour", "routes[0].colour",
         "unknown key"),
        ("routes:", "route_list: 1\nroutes:", "route_list", "route_list", "unknown key"),
        ("price_sats: 10", "price_sats: 10\n    token_mode: once", "token_mode",
         "routes[0].token_mode", "reusable | per-request"),
        ("price_sats: 10", "price_sats: 10\n    capabilities: [read]\n"
         "    required_capability: write", "required_capability",
         "routes[0].required_capability", "one of capabilities"),
        ("price_sats: 10", "price_sats: 10\n    methods: [GET, 'BAD METHOD']", "methods",
         "routes[0].methods[1]", "HTTP method"),
        ("price_sats: 10", "price_sats: 10\n    upstream_timeout_seconds: 0",
         "upstream_timeout_seconds", "routes[0].upstream_timeout_seconds", "> 0"),
        ("price_sats: 10", "price_sats: 10\n    upstream_timeout_seconds: " + "9" * 400,
         "upstream_timeout_seconds", "routes[0].upstream_timeout_seconds", "at most"),
        ("price_sats: 10", "price_sats: 10\n    path_rewrite: {pattern: '^/x', replacement: '\\2'}",
         "path_rewrite", "routes[0].path_rewrite.replacement", "bad replacement"),
        ("price_sats: 10", "price_sats: 10\n    upstream_headers: {Content-Length: '1'}",
         "upstream_headers", "routes[0].upstream_headers.Content-Length", "hop-by-hop"),
        ("price_sats: 10", "price_sats: 10\n    upstream_headers: {Authorization: 'x'}",
         "upstream_headers", "routes[0].upstream_headers", "forward_authorization"),
        ("price_sats: 10", "price_sats: 10\n    upstream_ca_file: missing-ca.pem",
         "upstream_ca_file", "routes[0].upstream_ca_file", "file not found"),
        ("https://upstream.example/base", "https://upstream.example/base?q=1", "upstream:",
         "routes[0].upstream", "no query"),
        ("https://upstream.example/base", "/relative", "upstream:", "routes[0].upstream",
         "http or https"),
        ("price_sats: 10", "price_sats: 10\n    upstream_headers: {X-Ok: \"a\\r\\nX-Evil: 1\"}",
         "upstream_headers", "routes[0].upstream_headers.X-Ok", "line break"),
        ("price_sats: 10", "price_sats: 10\n    upstream_headers: {Proxy-Foo: x}",
         "upstream_headers", "routes[0].upstream_headers.Proxy-Foo", "hop-by-hop"),
        ("price_sats: 10", "price_sats: 10\n    upstream_headers: {Token: x}",
         "upstream_headers", "routes[0].upstream_headers.Token", "credential header"),
        ("price_sats: 10", "price_sats: 10\n    max_body_bytes: -1",
         "max_body_bytes", "routes[0].max_body_bytes", ">= 0"),
        ("price_sats: 10", "price_sats: 10\n    request_body_timeout_seconds: 0",
         "request_body_timeout_seconds", "routes[0].request_body_timeout_seconds", "> 0"),
        ("price_sats: 10", "price_sats: 10\n    service: 'a b'",
         "service", "routes[0].service", "must match"),
        ("price_sats: 10", "price_sats: 10\n    cors: {allow_origins: ['https://a.example/']}",
         "cors", "routes[0].cors.allow_origins[0]", "scheme://host"),
        ("price_sats: 10",
         "price_sats: 10\n    cors: {allow_origins: '*', allow_credentials: true}",
         "cors", "routes[0].cors.allow_credentials", "list the origins"),
        ("price_sats: 10", "price_sats: 10\n    cors: {allow_credentials: true}",
         "cors", "routes[0].cors.allow_origins", "required"),
        ("lnd:", "invalid_credential_status: 403\nlnd:", "invalid_credential_status",
         "invalid_credential_status", "402 (Aperture) or 401"),
        ("lnd:", "challenge_rate_limit: {ipv6_prefix: 129}\nlnd:", "challenge_rate_limit",
         "challenge_rate_limit.ipv6_prefix", "<= 128"),
        ("lnd:", "listen: {header_timeout_seconds: 0}\nlnd:", "listen",
         "listen.header_timeout_seconds", "> 0"),
        ("lnd:", "listen: {max_connections: 0}\nlnd:", "listen", "listen.max_connections",
         ">= 1"),
        ("price_sats: 10", "price_sats: 10\n    token_validity_seconds: 0",
         "token_validity_seconds", "routes[0].token_validity_seconds", ">= 1"),
        ("lnd:", "listen: {public: 'localhost'}\nlnd:", "listen", "listen.public", "host:port"),
        ("lnd:", "listen: {admin: '127.0.0.1:70000'}\nlnd:", "listen", "listen.admin", "bad port"),
        ("lnd:", "listen: {public: '127.0.0.1:8402'}\nlnd:", "listen", "listen.admin",
         "same address"),
        ("lnd:", "trusted_proxies: ['10.0.0.1/8']\nlnd:", "trusted_proxies",
         "trusted_proxies[0]", "bad CIDR"),
        ("lnd:", "store: {url: 'mysql://db/x'}\nlnd:", "store", "store.url", "unsupported"),
        ("lnd:", "verified_cache_size: -5\nlnd:", "verified_cache_size",
         "verified_cache_size", ">= 0"),
        ("  macaroon: invoice.macaroon\n", "", "tls_cert:", "lnd.macaroon", "required"),
        ("tls_cert: tls.cert", "tls_cert: nope.cert", "tls_cert", "lnd.tls_cert", "not found"),
        ("tls_cert: tls.cert", "tls_cert: tls.cert\n  tls_cert: tls.cert", "tls_cert: tls.cert\n",
         "lnd.tls_cert", "duplicate key"),
    ],
)  # fmt: skip
def test_each_error_kind_is_located(
    tmp_path: Path, old: str, new: str, needle: str, field: str, message: str
) -> None:
    assert old in MINIMAL
    path = write(tmp_path, MINIMAL.replace(old, new, 1))
    error = only_error(path)
    assert error.field == field
    assert message in error.message
    if needle.endswith("\n"):  # the second occurrence (duplicate keys)
        lines = [n for n, t in enumerate(path.read_text().splitlines(), 1) if needle[:-1] in t]
        assert error.line == lines[-1]
    else:
        assert error.line == line_of(path, needle)
    assert error.file == str(path)


def test_all_errors_are_collected_in_line_order(tmp_path: Path) -> None:
    text = MINIMAL.replace("price_sats: 10", "price_sats: -1\n    bogus: 1").replace(
        "lnd:", "verified_cache_size: x\nlnd:"
    )
    errors = errors_of(write(tmp_path, text))
    assert [e.field for e in errors] == [
        "verified_cache_size",
        "routes[0].price_sats",
        "routes[0].bogus",
    ]
    assert [e.line for e in errors] == sorted(e.line for e in errors)


def test_check_files_false_skips_existence(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL, files=False)
    assert {e.field for e in errors_of(path)} == {"lnd.tls_cert", "lnd.macaroon"}
    assert load_config(path, check_files=False).lightning.macaroon == tmp_path / "invoice.macaroon"


def test_env_interpolation(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "price_sats: 10",
        "price_sats: 10\n    upstream_headers: {X-Api-Key: '${SIGNAL_API_KEY}', X-Cost: '$$5'}",
    )
    config = load_config(write(tmp_path, text), environ={"SIGNAL_API_KEY": "k-123"})
    assert config.routes.routes[0].upstream_headers == (("X-Api-Key", "k-123"), ("X-Cost", "$5"))


def test_missing_env_variable_is_named(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "price_sats: 10", "price_sats: 10\n    upstream_headers: {X-Api-Key: '${SIGNAL_API_KEY}'}"
    )
    path = write(tmp_path, text)
    error = only_error(path, environ={})
    assert error.field == "routes[0].upstream_headers.X-Api-Key"
    assert "SIGNAL_API_KEY" in error.message
    assert error.line == line_of(path, "SIGNAL_API_KEY")


def test_price_in_msats_and_free_routes(tmp_path: Path) -> None:
    text = MINIMAL.replace("price_sats: 10", "price_msats: 1500") + textwrap.indent(
        "- name: free\n  path: '^/free$'\n  upstream: 'http://127.0.0.1:9000'\n  price_sats: 0\n",
        "  ",
    )
    routes = load_config(write(tmp_path, text)).routes
    assert routes.routes[0].price_msat == 1500
    free = routes.by_name("free")
    assert free is not None
    assert free.is_free


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("", 1, "empty"),
        ("routes: [\n", 2, "YAML syntax"),
        ("- just\n- a list\n", 1, "expected a mapping"),
    ],
)
def test_unusable_files(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(text)
    error = only_error(path)
    assert error.line == line
    assert message in str(error)


def test_unreadable_file(tmp_path: Path) -> None:
    error = only_error(tmp_path / "absent.yaml")
    assert "cannot read" in error.message


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    with pytest.raises(AttributeError):
        config.verified_cache_size = 1  # type: ignore[misc]
