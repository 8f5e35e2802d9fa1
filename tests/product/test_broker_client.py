"""``broker_client``: what the client job accepts from a broker, against small local servers.

These servers answer as a broker would, or as a broken or hostile one would; the end-to-end path
against the sandbox and the real ``dgprov broker`` is in ``test_fetch_config_broker.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dgprov.broker_client import (
    MAX_SHOWN_CHARACTERS,
    PROVISIONING_PATH,
    check_broker_scope,
    check_broker_url,
    fetch_provisioning,
    shown,
)
from dgprov.entra_auth import platform_broker_options
from dgprov.errors import (
    AuthenticationError,
    DgprovError,
    InvalidAnswer,
    NothingFound,
    OriginRefused,
    RemoteError,
    TransportFailure,
    UsageError,
)
from dgprov.fetch import chosen_source
from dgprov.join import JoinState
from dgprov.stored_value import ProvisioningConfig
from dgprov.tls import tls_context

from .hostile import Exchange, closed_port, hostile, replying

ACCESS_TOKEN = "eyJhbGciOiJSUzI1NiJ9.an-access-token-for-the-broker.c2lnbmF0dXJl"
ENROLLMENT_TOKEN = "BrokerMintedEnrollmentToken0000001"
GOOD = {"enrollment_url": "https://enroll.contoso.example/", "enrollment_token": ENROLLMENT_TOKEN}


def provision(url: str) -> ProvisioningConfig:
    return asyncio.run(fetch_provisioning(url, ACCESS_TOKEN, verify=tls_context()))


def refused(url: str) -> DgprovError:
    with pytest.raises(DgprovError) as caught:
        provision(url)
    message = str(caught.value)
    assert ACCESS_TOKEN not in message and ENROLLMENT_TOKEN not in message
    assert "\n" not in message
    return caught.value


def test_success_sends_the_token_to_the_broker_only() -> None:
    with hostile(replying(200, GOOD)) as broker:
        config = provision(broker.url + "/")  # a trailing / is not doubled
    assert config == ProvisioningConfig(GOOD["enrollment_url"], ENROLLMENT_TOKEN)
    (request,) = broker.received
    assert (request.method, request.path) == ("POST", PROVISIONING_PATH)
    assert request.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert request.headers["user-agent"].startswith("dgprov/")


def test_a_broker_behind_a_path_prefix() -> None:
    with hostile(replying(200, GOOD)) as broker:
        provision(broker.url + "/dgprov-broker")
    assert broker.received[0].path == "/dgprov-broker" + PROVISIONING_PATH


REFUSALS: list[tuple[int, type[DgprovError], int, str, str]] = [
    (401, AuthenticationError, 2, "your sign-in was not accepted", "--broker-scope"),
    (403, NothingFound, 1, "you may not be provisioned", "add you to the Defguard group"),
    (404, NothingFound, 1, "no Defguard user was found for you", "create your Defguard account"),
    (409, NothingFound, 1, "more than one Defguard user", "unique"),
    (429, RemoteError, 1, "moments ago", "wait a minute and run again"),
    (503, RemoteError, 1, "cannot reach Defguard or Entra ID", "run again later"),
    (500, RemoteError, 1, "some_code: what the broker says", "tell your administrator"),
]


@pytest.mark.parametrize(("status", "kind", "exit_status", "problem", "fix"), REFUSALS)
def test_each_refusal_is_one_line_with_the_fix(
    status: int, kind: type[DgprovError], exit_status: int, problem: str, fix: str
) -> None:
    body = {"error": "some_code", "message": "what the broker says"}
    with hostile(replying(status, body)) as broker:
        error = refused(broker.url)
    assert type(error) is kind and error.exit_status == exit_status
    message = str(error)
    assert message.startswith(f"the broker answered {status}: ")
    assert problem in message and fix in message
    assert "(some_code: what the broker says)" in message or status == 500
    assert message.count(str(status)) == 1  # said once, in the prefix
    assert len(broker.received) == 1  # one attempt: a repeat would rotate the token again


@pytest.mark.parametrize(
    ("code", "fix"),
    [
        ("not_in_group", "add you to the Defguard group"),
        ("user_disabled", "enable your Defguard account"),
        ("account_disabled", "enable your account"),
        ("enrolled", "add this device from the Defguard desktop client"),
        ("guest_account", "allows guests (--allow-guests)"),
        ("something_new", "add you to the Defguard group (or to enable your account)"),
    ],
)
def test_each_documented_403_code_gets_its_fix(code: str, fix: str) -> None:
    with hostile(replying(403, {"error": code, "message": "no"})) as broker:
        message = str(refused(broker.url))
    assert message.endswith(fix) or fix in message


def test_429_says_how_long_to_wait() -> None:
    def limited(exchange: Exchange) -> None:
        exchange.reply(429, {"error": "rate_limited", "message": "slow"}, {"Retry-After": "42"})

    with hostile(limited) as broker:
        message = str(refused(broker.url))
    assert "wait 42 s and run again" in message
    assert len(broker.received) == 1  # returned at once, not waited out


def test_a_hostile_message_is_cut_short_and_made_printable() -> None:
    body = {
        "error": "forbidden\r\nX-Injected: 1",
        "message": "\x1b[2J\x1b[31mred\u202egnp.exe\u0000" + "A" * 5000,
    }
    with hostile(replying(403, body)) as broker:
        message = str(refused(broker.url))
    assert "\x1b" not in message and "\u202e" not in message and "\x00" not in message
    assert "forbidden X-Injected: 1" in message and "[31mred gnp.exe" in message
    assert len(message) < 2 * MAX_SHOWN_CHARACTERS + 200


def test_a_refusal_without_json_still_names_the_status() -> None:
    with hostile(replying(403, b"<html>Forbidden by a proxy</html>")) as broker:
        message = str(refused(broker.url))
    assert message.startswith("the broker answered 403: ") and "(no explanation)" in message


def test_shown_is_bounded() -> None:
    assert shown("x" * 1000).endswith("…") and len(shown("x" * 1000)) == MAX_SHOWN_CHARACTERS
    assert shown({"not": "text"}) == "{'not': 'text'}"


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_refused_and_the_token_goes_nowhere_else(status: int) -> None:
    with hostile(replying(200, GOOD)) as elsewhere:

        def redirect(exchange: Exchange) -> None:
            target = elsewhere.url + PROVISIONING_PATH
            exchange.reply(status, b"", {"Location": target})

        with hostile(redirect) as broker:
            error = refused(broker.url)
    assert isinstance(error, OriginRefused) and error.exit_status == 1
    assert "redirect" in str(error) and "--broker-url" in str(error)
    assert elsewhere.received == []


def oversize(exchange: Exchange) -> None:
    padding = "x" * (70 * 1024)
    exchange.reply(200, {**GOOD, "enrollment_token": ENROLLMENT_TOKEN + padding})


def endless(exchange: Exchange) -> None:
    exchange.stream(iter([b'{"enrollment_url": "' + b"x" * 2**20] * 20))


@pytest.mark.parametrize(
    ("route", "named"),
    [
        (oversize, "larger than 64 KiB"),
        (endless, "larger than 16 MiB"),
        (replying(200, b"not json"), "not JSON"),
        (replying(200, [GOOD]), "expected an object"),
        (replying(200, {**GOOD, "polling_token": "x"}), "unexpected keys (polling_token)"),
        (replying(200, {"enrollment_url": GOOD["enrollment_url"]}), "'enrollment_token'"),
        (replying(200, {**GOOD, "enrollment_token": 42}), "'enrollment_token' is a number"),
        (replying(200, {**GOOD, "enrollment_url": "http://enroll.example/"}), "must use https"),
        (replying(200, {**GOOD, "enrollment_url": "https://u:p@e.example/"}), "credentials"),
        (replying(200, {**GOOD, "enrollment_token": "has space"}), "printable ASCII"),
    ],
)
def test_a_wrong_answer_is_refused(route: Any, named: str) -> None:
    with hostile(route) as broker:
        error = refused(broker.url)
    assert isinstance(error, InvalidAnswer) and error.exit_status == 1
    assert named in str(error) and str(error).startswith("the broker answered 200")


def test_an_answer_that_does_not_decode() -> None:
    def garbled(exchange: Exchange) -> None:
        exchange.reply(200, b"this is not gzip at all", {"Content-Encoding": "gzip"})

    with hostile(garbled) as broker:
        error = refused(broker.url)
    assert isinstance(error, TransportFailure) and "could not be read (DecodingError)" in str(error)


def test_an_unreachable_broker() -> None:
    error = refused(closed_port())
    assert isinstance(error, TransportFailure) and "could not be reached" in str(error)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://broker.contoso.example", "use https"),
        ("https://user:pw@broker.contoso.example", "remove the credentials"),
        ("broker.contoso.example", "not an http(s) URL"),
    ],
)
def test_broker_url_rules(url: str, problem: str) -> None:
    with pytest.raises(UsageError, match="--broker-url") as caught:
        check_broker_url(url)
    assert problem in str(caught.value)
    assert check_broker_url("https://broker.contoso.example/") == "https://broker.contoso.example"
    assert check_broker_url("http://127.0.0.1:8080") == "http://127.0.0.1:8080"


def test_broker_scope_rules() -> None:
    scope = "api://6f1c0c52-0000-4000-8000-000000000001/Provision"
    assert check_broker_scope(scope) == scope
    for bad, problem in [
        ("", "one scope without spaces"),
        ("api://x/Provision User.Read", "one scope without spaces"),
        ("Provision", "names no API"),
    ]:
        with pytest.raises(UsageError, match="--broker-scope") as caught:
            check_broker_scope(bad)
        assert problem in str(caught.value)


# ---------------------------------------------------------------------------- pure decisions


def test_auto_prefers_a_configured_broker_without_detecting_the_join() -> None:
    def must_not_detect() -> JoinState:
        raise AssertionError("the join was detected although a broker is configured")

    assert chosen_source("auto", "https://broker.example", must_not_detect)[0] == "broker"
    joined_ad = JoinState("ad", "realm list", "corp.example")
    assert chosen_source("auto", None, lambda: joined_ad) == ("ad", joined_ad)
    assert chosen_source("auto", None, lambda: JoinState("entra"))[0] == "entra"
    assert chosen_source("auto", None, lambda: JoinState("none", "nothing"))[0] is None
    assert chosen_source("entra", "https://broker.example", must_not_detect)[0] == "entra"
    assert chosen_source("broker", None, must_not_detect)[0] == "broker"


@pytest.mark.parametrize(
    ("platform", "msal", "runtime", "auth", "expected"),
    [
        ("win32", "1.29.0", True, "auto", {"enable_broker_on_windows": True}),
        ("win32", "1.39.0", True, "browser", {"enable_broker_on_windows": True}),
        ("win32", "1.24.0", True, "auto", {}),  # the option is new in 1.25
        ("win32", "1.30.0b1", True, "auto", {"enable_broker_on_windows": True}),
        ("win32", "2.0.0", True, "auto", {"enable_broker_on_windows": True}),
        ("win32", "unknown", True, "auto", {}),
        ("win32", "1.29.0", False, "auto", {}),  # msal errors out without pymsalruntime
        ("win32", "1.29.0", True, "device-code", {}),  # asked for explicitly
        ("linux", "1.39.0", True, "auto", {}),
        ("darwin", "1.39.0", True, "auto", {}),
    ],
)
def test_platform_broker_decision(
    platform: str, msal: str, runtime: bool, auth: Any, expected: dict[str, bool]
) -> None:
    assert platform_broker_options(platform, msal, runtime, auth) == expected
