"""Property tests of the grammar: round trips, and one accepted spelling per payload."""

from __future__ import annotations

import json
import string
from datetime import UTC, datetime
from typing import Any

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.payment import authparams, b64url, challenge, credential, jcs, wwwauth
from gateway.payment.errors import PaymentAuthError

SECRET = b"s" * 32
# Everything a quoted-string can carry: tab, visible ASCII, space, obs-text and beyond.
QUOTABLE = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x7f").filter(
        lambda c: c == "\t" or c >= " "
    ),
    max_size=40,
)
NONEMPTY = QUOTABLE.filter(bool)
B64 = st.binary(max_size=64).map(b64url.encode).filter(bool)
JSON_SCALAR = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
)
JSON_VALUE = st.recursive(
    JSON_SCALAR,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.text(st.characters(exclude_categories=["Cs"]), max_size=8), inner, max_size=4
        )
    ),
    max_leaves=20,
)


@given(st.binary(max_size=200))
def test_base64url_round_trip(data: bytes) -> None:
    assert b64url.decode(b64url.encode(data)) == data


@given(st.text(alphabet=string.ascii_letters + string.digits + "-_=+/ \n", max_size=24))
def test_base64url_accepts_exactly_one_spelling(text: str) -> None:
    try:
        data = b64url.decode(text)
    except PaymentAuthError:
        return
    assert b64url.encode(data) == text


@given(st.text(alphabet=string.ascii_letters + string.digits + "-_=", max_size=24))
def test_padded_mode_accepts_at_most_the_canonical_and_the_padded_spelling(text: str) -> None:
    try:
        data = b64url.decode(text, allow_padding=True)
    except PaymentAuthError:
        return
    canonical = b64url.encode(data)
    assert text in (canonical, canonical + "=" * (-len(canonical) % 4))


@settings(max_examples=300)
@given(JSON_VALUE)
def test_jcs_agrees_with_an_independent_implementation(value: Any) -> None:
    assert jcs.canonicalize(value) == rfc8785.dumps(value)


@settings(max_examples=300)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_jcs_numbers_round_trip_and_match_the_oracle(number: float) -> None:
    text = jcs.canonicalize(number).decode()
    assert text == rfc8785.dumps(number).decode()
    assert float(text) == number


@given(JSON_VALUE)
def test_jcs_is_a_fixed_point(value: object) -> None:
    once = jcs.canonicalize(value)
    assert jcs.canonicalize_text(once) == once


def params_strategy() -> st.SearchStrategy[challenge.ChallengeParams]:
    return st.builds(
        challenge.ChallengeParams,
        id=NONEMPTY,
        realm=NONEMPTY,
        method=st.from_regex(r"[a-z]{1,10}", fullmatch=True),
        intent=st.from_regex(r"[a-z0-9-]{1,10}", fullmatch=True),
        request=B64,
        expires=st.none() | QUOTABLE,
        digest=st.none() | QUOTABLE,
        description=st.none() | QUOTABLE,
        opaque=st.none() | B64,
    )


@given(params_strategy())
def test_challenge_header_round_trip(params: challenge.ChallengeParams) -> None:
    assert wwwauth.parse_challenges(wwwauth.format_challenge(params)) == [params]


@given(
    st.lists(params_strategy(), min_size=1, max_size=4),
    st.lists(
        st.sampled_from(
            [
                'Basic realm="x, y"',
                "Bearer",
                'L402 macaroon="AgE=", invoice="lnbc1"',
                "Negotiate abc==",
                'Digest realm="Payment id=z", intent="bogus"',
            ]
        ),
        max_size=3,
    ),
    st.booleans(),
)
def test_several_challenges_in_one_field_or_in_several(
    offers: list[challenge.ChallengeParams], others: list[str], one_field: bool
) -> None:
    fields = [wwwauth.format_challenge(p) for p in offers]
    mixed = [*others, *fields] if others else fields
    values = [", ".join(mixed)] if one_field else mixed
    assert wwwauth.parse_challenges(values) == offers


@given(QUOTABLE)
def test_quoted_string_round_trip(value: str) -> None:
    (raw,) = authparams.parse_challenge_list(f"Payment x={authparams.quote(value)}")
    assert raw.params == (("x", value),)


PAYLOAD_SCALAR = st.none() | st.booleans() | st.integers() | st.text(max_size=20)


@given(params_strategy(), st.dictionaries(st.text(max_size=8), PAYLOAD_SCALAR, max_size=3))
def test_credential_token_round_trip_and_unique_spelling(
    params: challenge.ChallengeParams, payload: dict[str, object]
) -> None:
    cred = credential.Credential(params, payload, None)
    header = credential.format_authorization(cred)
    assert credential.parse_authorization(header) == cred
    token = header.split(" ", 1)[1]
    # The token's bytes are the JCS form: re-encoding what was read gives the same text.
    assert b64url.encode(jcs.canonicalize(cred.to_json())) == token
    assert json.loads(b64url.decode(token))["challenge"] == params.echo()


@given(st.fixed_dictionaries({"amount": st.from_regex(r"[1-9][0-9]{0,6}", fullmatch=True)}),
       st.sampled_from(["realm", "method", "intent", "request", "expires", "opaque"]))  # fmt: skip
def test_every_bound_slot_is_bound(request: dict[str, str], slot: str) -> None:
    issued = challenge.issue(
        SECRET, realm="api.example", method="lightning", intent="charge", request=request,
        expires=datetime(2030, 1, 1, tzinfo=UTC), opaque={"route": "a"},
    )  # fmt: skip
    assert challenge.verify_id(SECRET, issued)
    changed = {
        "realm": "api.example2", "method": "lightningx", "intent": "session",
        "request": b64url.encode(b'{"amount":"x"}'), "expires": "2031-01-01T00:00:00Z",
        "opaque": b64url.encode(b'{"route":"b"}'),
    }  # fmt: skip
    tampered = challenge.ChallengeParams(**{**issued.__dict__, slot: changed[slot]})
    assert not challenge.verify_id(SECRET, tampered)
    # description is display only: not bound.
    relabelled = challenge.ChallengeParams(**{**issued.__dict__, "description": "free!"})
    assert challenge.verify_id(SECRET, relabelled)
