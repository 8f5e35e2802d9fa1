"""Port of Defguard core's ``crates/defguard_core/src/lib.rs`` unit test of the phone rule.

v2.0.1:crates/defguard_core/src/lib.rs:1186 and v1.6.6:crates/defguard_core/src/lib.rs:991
(``test_is_valid_phone_number_dg25_10``), through the one place a client meets the rule:
``activate_user``, which checks the phone before the password.
"""

from __future__ import annotations

from .conftest import Hogwarts, enrollment_session

VALID = ["+48 (91) 123-456", "123 456 7890", "+1 (202) 555-0173", "91-1234-5678", "(22) 567 890"]
INVALID = [
    "4*4",
    "+48  123456789",
    "123-456-789-0000",
    "(+48) 123 456",
    "202.555.0173",
    "(12345) 6789",
    "+48 (91) 123-456 000 111",
]


def test_is_valid_phone_number_dg25_10(hogwarts: Hogwarts) -> None:
    """v2.0.1:crates/defguard_core/src/lib.rs:1186, v1.6.6:crates/defguard_core/src/lib.rs:991."""
    enrollment_session(hogwarts, "adumbledore2")
    for number, valid in [(n, True) for n in VALID] + [(n, False) for n in INVALID]:
        response = hogwarts.proxy.post(
            "/api/v1/enrollment/activate_user", json={"password": "weak", "phone_number": number}
        )
        expected = "password not strong enough" if valid else "invalid phone number"
        assert (response.status_code, response.json()) == (400, {"error": expected}), number
