"""Key material for the Entra emulator: a loopback CA with a server certificate, and JWT signing.

MSAL refuses plain-HTTP authorities, so the sign-in endpoints and Graph are served over HTTPS
with a certificate from a CA generated at start; clients trust it through the CA file whose
path the sandbox prints. Tokens are RS256 JWTs signed with a key published at the JWKS URI.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class TlsFiles:
    ca_bundle: Path
    certificate: Path
    private_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_tls_files(directory: Path) -> TlsFiles:
    """A fresh CA and a server certificate for 127.0.0.1, ::1 and localhost, written as PEM."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("dgprov sandbox CA"))
        .issuer_name(_name("dgprov sandbox CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca_bundle.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.certificate.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    files.private_key.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    files.private_key.chmod(0o600)
    return files


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenInvalid(ValueError):
    """A JWT that this signer did not issue, or that is malformed."""


class JwtSigner:
    """RS256 signing and verification with one current key pair, published as a JWKS.

    ``rotate`` replaces the key (new ``kid``) and stops publishing the old one, the way a
    relying party sees Entra roll its keys; the emulators' own services still verify tokens
    signed before the rotation (they are Microsoft's, and know every key).
    """

    def __init__(self) -> None:
        self._private_key: rsa.RSAPrivateKey | None = None
        self.key_id = uuid.uuid4().hex
        self._retired: dict[str, rsa.RSAPublicKey] = {}

    def rotate(self) -> str:
        """A new signing key; return its ``kid``."""
        if self._private_key is not None:
            self._retired[self.key_id] = self._private_key.public_key()
        self._private_key = None
        self.key_id = uuid.uuid4().hex
        return self.key_id

    @property
    def _key(self) -> rsa.RSAPrivateKey:
        # Generated on first use: most sandboxes in a test run never issue a token.
        if self._private_key is None:
            self._private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return self._private_key

    def sign(self, claims: dict[str, Any]) -> str:
        header = {"alg": "RS256", "typ": "JWT", "kid": self.key_id}
        signing_input = (
            f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        )
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64url(signature)}"

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a token this signer issued; expiry is the caller's business."""
        try:
            header_part, claims_part, signature_part = token.split(".")
            header = json.loads(b64url_decode(header_part))
            kid = header.get("kid")
            key = self._key.public_key() if kid == self.key_id else self._retired.get(str(kid))
            if header.get("alg") != "RS256" or key is None:
                raise TokenInvalid("unknown signing key")
            key.verify(
                b64url_decode(signature_part),
                f"{header_part}.{claims_part}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
            claims: dict[str, Any] = json.loads(b64url_decode(claims_part))
        except (ValueError, InvalidSignature) as exc:
            raise TokenInvalid("signature validation failed") from exc
        return claims

    def jwks(self) -> dict[str, Any]:
        numbers = self._key.public_key().public_numbers()
        return {
            "keys": [
                {
                    "kty": "RSA",
                    "use": "sig",
                    "alg": "RS256",
                    "kid": self.key_id,
                    "n": b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
                    "e": b64url(numbers.e.to_bytes(3, "big")),
                }
            ]
        }
