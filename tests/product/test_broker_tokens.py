"""``dgprov broker`` refuses every access token Microsoft says a web API must refuse (401).

Each case runs against the real broker process and sandbox; none may reach Defguard (no token
issued, no enrollment call counted). Tokens are real sandbox tokens (MSAL) or real ones changed
and re-signed with the tenant's own key, so only the changed claim can be the reason.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from dgprov_sandbox.keys import JwtSigner

from dgprov.broker import tokens
from dgprov.broker.tokens import KeySet, KeysUnavailable, TokenValidator

from ..broker_fixtures import BrokerProcess, broker_process, broker_token
from ..conftest import Running, StartSandbox, example_tenant, sign_in
from ..sandbox.conftest import broker_app_only_token, control, jwt_claims

UPN = "jdoe@contoso.example"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def resigned(running: Running, token: str, **changes: Any) -> str:
    """``token`` with claims changed (None removes one), signed again with the tenant's key."""
    claims = jwt_claims(token)
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return signer(running).sign(claims)


def with_header(token: str, header: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    _, claims_part, _ = token.split(".")
    signing_input = f"{b64(json.dumps(header).encode())}.{claims_part}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


def signer(running: Running) -> JwtSigner:
    assert running.sandbox.entra is not None
    return running.sandbox.entra.signer


def public_key_pem(running: Running) -> bytes:
    key = signer(running)._key.public_key()
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def enrollment_calls(running: Running) -> int:
    counts = running.sandbox.core_requests
    return sum(
        n for route, n in counts.items() if "start_enrollment" in route or "desktop" in route
    )


@pytest.fixture
def served(start_sandbox: StartSandbox) -> Iterator[tuple[Running, BrokerProcess]]:
    running = start_sandbox(example_tenant())
    with broker_process(running) as broker:
        yield running, broker


CASES: dict[str, Callable[[Running, str], str]] = {
    "expired": lambda r, t: resigned(
        r, t, exp=int(time.time()) - 600, nbf=int(time.time()) - 4200, iat=int(time.time()) - 4200
    ),
    "not yet valid": lambda r, t: resigned(r, t, nbf=int(time.time()) + 600),
    "wrong audience (a Graph token)": lambda r, t: sign_in(r, UPN, ["User.Read"]),
    "wrong issuer": lambda r, t: resigned(
        r, t, iss=f"https://login.example.net/{jwt_claims(t)['tid']}/v2.0"
    ),
    "other tenant": lambda r, t: resigned(
        r,
        t,
        tid=(other := str(uuid.uuid4())),
        iss=jwt_claims(t)["iss"].replace(jwt_claims(t)["tid"], other),
    ),
    "alg none": lambda r, t: with_header(t, {"alg": "none", "typ": "JWT"}, lambda _: b""),
    "HMAC signed with the public key": lambda r, t: with_header(
        t,
        {"alg": "HS256", "typ": "JWT", "kid": signer(r).key_id},
        lambda data: hmac.new(public_key_pem(r), data, hashlib.sha256).digest(),
    ),
    "tampered signature": lambda r, t: (
        t[:-6] + ("AAAAAA" if not t.endswith("AAAAAA") else "BBBBBB")
    ),
    "tampered claims": lambda r, t: ".".join(
        [
            t.split(".")[0],
            b64(json.dumps({**jwt_claims(t), "oid": str(uuid.uuid4())}).encode()),
            t.split(".")[2],
        ]
    ),
    "unknown kid": lambda r, t: with_header(
        t, {"alg": "RS256", "typ": "JWT", "kid": "not-a-published-key"}, lambda _: b"x" * 256
    ),
    "missing scope": lambda r, t: resigned(r, t, scp=None),
    "another scope only": lambda r, t: resigned(r, t, scp="Provision.Read"),
    "app-only token": lambda r, t: broker_app_only_token(r),
    # A token for the broker's scope that another app (a consent-phishing one) obtained.
    "another client app": lambda r, t: resigned(r, t, azp=str(uuid.uuid4()), appid=None),
    "not a JWT": lambda r, t: "not-a-jwt",
}


def test_every_bad_token_is_401_and_never_reaches_defguard(
    served: tuple[Running, BrokerProcess],
) -> None:
    running, broker = served
    good = broker_token(running, UPN)
    before = enrollment_calls(running)
    for name, make in CASES.items():
        response = broker.post(make(running, good))
        assert response.status_code == 401, (name, response.text)
        body = response.json()
        assert body["error"] == "invalid_token" and body["message"], name
        assert response.headers["www-authenticate"].startswith("Bearer"), name
    missing = broker.post(None)
    assert missing.status_code == 401 and missing.json()["error"] == "invalid_token"
    assert enrollment_calls(running) == before == 0
    assert running.tokens("jdoe") == []
    outcomes = [line["outcome"] for line in broker.audit_lines()]
    assert outcomes == ["invalid_token"] * (len(CASES) + 1)
    # The untouched token works: the refusals above were for what each case changed.
    assert broker.post(good).status_code == 200
    assert len(running.tokens("jdoe")) == 1


def test_reasons_name_the_problem(served: tuple[Running, BrokerProcess]) -> None:
    running, broker = served
    good = broker_token(running, UPN)
    expected = {
        "expired": "expired",
        "not yet valid": "not valid yet",
        "wrong audience (a Graph token)": "another audience",
        "other tenant": "another tenant",
        "alg none": "signing algorithm",
        "HMAC signed with the public key": "signing algorithm",
        "another client app": "client app",
        "missing scope": "Provision",
        "app-only token": "app-only",
        "unknown kid": "unknown kid",
    }
    for name, words in expected.items():
        message = broker.post(CASES[name](running, good)).json()["message"]
        assert words in message, (name, message)


def test_a_rotated_key_is_fetched_once_and_forged_kids_do_not_hammer_the_authority(
    served: tuple[Running, BrokerProcess],
) -> None:
    """After a rotation the first token with the new ``kid`` makes the broker refetch the keys
    and is accepted; unknown ``kid``s after that do not refetch (the floor)."""
    running, broker = served
    keys_route = "GET /{tenant}/discovery/v2.0/keys"
    assert broker.get("/readyz").status_code == 200
    fetched = running.sandbox.authority_requests[keys_route]
    assert fetched >= 1
    old = broker_token(running, UPN)
    assert control(running, "rotate-keys").status_code == 200
    new = broker_token(running, "sobrien@contoso.example")
    assert broker.post(new).status_code == 200
    assert running.sandbox.authority_requests[keys_route] == fetched + 1
    forged = CASES["unknown kid"](running, new)
    for _ in range(5):
        assert broker.post(forged).status_code == 401
    assert running.sandbox.authority_requests[keys_route] == fetched + 1
    # The old key is no longer published: a token it signed is refused.
    assert broker.post(old).status_code == 401
    assert running.tokens("jdoe") == []


def test_v1_tokens_and_the_app_id_uri_audience_are_accepted(
    served: tuple[Running, BrokerProcess],
) -> None:
    """An API registered with accessTokenAcceptedVersion 1 gets v1.0 tokens: the STS issuer
    and the App ID URI as audience. Both forms are the tenant's own."""
    running, broker = served
    good = broker_token(running, UPN)
    tenant = jwt_claims(good)["tid"]
    v1 = resigned(
        running,
        good,
        iss=f"https://sts.windows.net/{tenant}/",
        aud=f"api://{running.info['broker_client_id']}",
        ver="1.0",
    )
    assert broker.post(v1).status_code == 200
    assert len(running.tokens("jdoe")) == 1


class FetchLog:
    """Counts the key set's fetches as its ``timer`` sees them: started, and ended (either way)."""

    def __init__(self) -> None:
        self.started = 0
        self.ended = 0

    @contextmanager
    def timer(self, service: str, what: str) -> Iterator[None]:
        self.started += 1
        try:
            yield
        finally:
            self.ended += 1

    async def until_started(self, count: int) -> None:
        deadline = time.monotonic() + 30
        while self.started < count:
            assert time.monotonic() < deadline, "the refresh never started"
            await asyncio.sleep(0.01)


def test_a_stale_key_set_is_refreshed_behind_the_requests_not_in_front_of_them(
    start_sandbox: StartSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daily refresh against an authority that drops connections (after holding each for
    2 s): tokens with a known ``kid`` are answered while the one refresh is still under way;
    a token with an unknown ``kid`` waits for that refresh (and starts no other)."""
    running = start_sandbox(example_tenant())
    token = broker_token(running, UPN)
    forged = CASES["unknown kid"](running, token)
    faults = running.sandbox.options.authority_faults
    fetches = FetchLog()

    async def scenario() -> None:
        keys = KeySet(
            running.info["authority_url"],
            ca_bundle=running.info["ca_bundle"],
            refetch_floor=30.0,
            timer=fetches.timer,
        )
        validator = TokenValidator(keys, running.info["broker_client_id"])
        try:
            await validator.validate(token)
            assert (fetches.started, fetches.ended) == (1, 1)
            monkeypatch.setattr(tokens, "KEYS_MAX_AGE_SECONDS", 0.0)  # the set is a day old
            faults.latency_ms, faults.drop_rate = 2000.0, 1.0
            callers = await asyncio.gather(*(validator.validate(token) for _ in range(20)))
            assert {caller.upn for caller in callers} == {UPN}
            assert fetches.ended == 1, "a request waited for the refresh"
            await fetches.until_started(2)
            assert fetches.ended == 1 and keys.refreshing
            with pytest.raises(KeysUnavailable):
                await validator.validate(forged)  # waits for the refresh, which fails
            assert (fetches.started, fetches.ended) == (2, 2)
            # The authority is still away: the old set serves on, nobody waits, none refetches.
            assert (await validator.validate(token)).upn == UPN
            assert fetches.started == 2 and not keys.refreshing
        finally:
            faults.latency_ms, faults.drop_rate = 0.0, 0.0
            await keys.aclose()

    asyncio.run(scenario())
