"""JSON batching on the Graph emulator (``graph_batch``): limits, order, ``dependsOn``, errors.

Over real HTTPS, with tokens from real MSAL sign-ins.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from .conftest import CSA_TYPE, OBRIEN_MAIL, odata_quote, read_csa


def batch(client: httpx.Client, requests: list[dict[str, Any]]) -> httpx.Response:
    return client.post("/$batch", json={"requests": requests})


def test_batch_limits(admin: httpx.Client) -> None:
    many = [{"id": str(i), "method": "GET", "url": "/me"} for i in range(21)]
    over = batch(admin, many)
    assert over.status_code == 400
    assert over.json()["error"]["message"] == "Number of requests inside batch exceeds the limit."
    duplicate = batch(
        admin,
        [{"id": "A", "method": "GET", "url": "/me"}, {"id": "a", "method": "GET", "url": "/me"}],
    )
    assert duplicate.status_code == 400
    unknown = batch(admin, [{"id": "1", "method": "GET", "url": "/me", "dependsOn": ["9"]}])
    assert unknown.status_code == 400


def test_batch_responses_are_shuffled_and_correlated_by_id(admin: httpx.Client) -> None:
    requests = [
        {"id": str(i), "method": "GET", "url": f"/users?$filter=mail eq 'nobody{i}@x'&$select=id"}
        for i in range(20)
    ]
    body = batch(admin, requests).json()
    ids = [r["id"] for r in body["responses"]]
    assert sorted(ids, key=int) == [str(i) for i in range(20)]
    assert ids != [str(i) for i in range(20)]
    assert all(r["status"] == 200 and r["body"]["value"] == [] for r in body["responses"])


def test_batch_depends_on_and_inner_errors(admin: httpx.Client) -> None:
    body = batch(
        admin,
        [
            {"id": "1", "method": "GET", "url": "/users/nobody@contoso.example"},
            {"id": "2", "method": "GET", "url": "/me", "dependsOn": ["1"]},
            {"id": "3", "method": "GET", "url": "me?$select=id"},
            {"id": "4", "method": "GET", "url": "https://graph.microsoft.com/v1.0/me"},
            {"id": "5", "method": "PATCH", "url": "/users/ed@contoso.example", "body": {}},
            {
                "id": "6",
                "method": "PATCH",
                "url": "/users/ed@contoso.example",
                "headers": {"Content-Type": "application/json"},
                "body": {
                    "customSecurityAttributes": {
                        "Defguard": {"@odata.type": CSA_TYPE, "EnrollmentToken": "z"}
                    }
                },
            },
            {
                "id": "7",
                "method": "GET",
                "url": f"/users?$filter=mail eq {quote(odata_quote(OBRIEN_MAIL))}&$select=id",
            },
        ],
    ).json()
    statuses = {r["id"]: r["status"] for r in body["responses"]}
    assert statuses == {"1": 404, "2": 424, "3": 200, "4": 400, "5": 400, "6": 204, "7": 200}
    by_id = {r["id"]: r for r in body["responses"]}
    assert "body" not in by_id["6"]
    assert len(by_id["7"]["body"]["value"]) == 1
    assert read_csa(admin, "ed@contoso.example")["Defguard"]["EnrollmentToken"] == "z"
