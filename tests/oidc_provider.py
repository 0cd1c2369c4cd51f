"""A local OpenID provider for the tests: keys generated here, the discovery document, the
JWKS and RFC 7662 introspection served over a real HTTP server on a loopback port, and
tokens minted per case."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

AUDIENCE = "dicomweb"
CLIENT = ("archive", "archive-secret")


@dataclass
class SigningKey:
    kid: str
    private: Any
    alg: str

    def public_jwk(self) -> dict[str, Any]:
        kind = ECAlgorithm if self.alg.startswith("ES") else RSAAlgorithm
        jwk: dict[str, Any] = json.loads(kind.to_jwk(self.private.public_key()))
        return {**jwk, "kid": self.kid, "use": "sig", "alg": self.alg}

    def public_pem(self) -> bytes:
        return bytes(
            self.private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )


def new_key(alg: str = "RS256") -> SigningKey:
    if alg.startswith("ES"):
        private: Any = ec.generate_private_key(ec.SECP256R1())
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return SigningKey(f"k-{secrets.token_hex(4)}", private, alg)


@dataclass
class Provider:
    issuer: str
    keys: list[SigningKey]
    jwks_fetches: int = 0
    # Opaque tokens the introspection endpoint knows: token -> its answer.
    opaque: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The sign-in of a browser (authorization code with PKCE, RFC 7636): the public client
    # it accepts, who signs in, with which scopes; the codes handed out and not yet used.
    public_client: str = "dicomweb-ui"
    login: dict[str, Any] = field(default_factory=lambda: {"sub": "alice", "scope": "openid read"})
    codes: dict[str, dict[str, str]] = field(default_factory=dict)

    def claims(self, **extra: Any) -> dict[str, Any]:
        now = int(time.time())
        base = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": "alice",
            "iat": now,
            "exp": now + 300,
            "scope": "openid read",
        }
        return {k: v for k, v in {**base, **extra}.items() if v is not None}

    def token(self, key: SigningKey | None = None, **extra: Any) -> str:
        key = key or self.keys[0]
        return jwt.encode(
            self.claims(**extra), key.private, algorithm=key.alg, headers={"kid": key.kid}
        )

    def hs256_with_public_key(self, **extra: Any) -> str:
        """The classic confusion attack: HS256 keyed with the provider's public key."""
        key = self.keys[0]
        header = {"alg": "HS256", "typ": "JWT", "kid": key.kid}
        signing = (
            f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(self.claims(**extra)).encode())}"
        )
        mac = hmac.new(key.public_pem(), signing.encode(), hashlib.sha256).digest()
        return f"{signing}.{_b64(mac)}"

    def unsigned(self, **extra: Any) -> str:
        header = {"alg": "none", "typ": "JWT", "kid": self.keys[0].kid}
        payload = json.dumps(self.claims(**extra)).encode()
        return f"{_b64(json.dumps(header).encode())}.{_b64(payload)}."


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@contextmanager
def oidc_provider(*algs: str) -> Iterator[Provider]:
    """A provider on 127.0.0.1 with one key per algorithm given (RS256 when none)."""
    provider = Provider("", [new_key(a) for a in (algs or ("RS256",))])

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            # A browser app on another origin reads the discovery document and the token.
            self.send_header("Access-Control-Allow-Origin", "*")
            self.end_headers()
            self.wfile.write(data)

        def _authorize(self, query: dict[str, list[str]]) -> None:
            """Signs `login` in at once and sends the browser back with a code."""
            one = {k: v[0] for k, v in query.items()}
            if (
                one.get("client_id") != provider.public_client
                or one.get("code_challenge_method") != "S256"
                or not one.get("code_challenge")
                or one.get("response_type") != "code"
            ):
                self._send(400, {"error": "invalid_request"})
                return
            code = secrets.token_urlsafe(16)
            provider.codes[code] = one
            target = f"{one['redirect_uri']}?{urlencode({'code': code, 'state': one['state']})}"
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _token(self, form: dict[str, list[str]]) -> None:
            one = {k: v[0] for k, v in form.items()}
            asked = provider.codes.pop(one.get("code", ""), None)
            verifier = one.get("code_verifier", "")
            challenge = _b64(hashlib.sha256(verifier.encode()).digest())
            if (
                asked is None
                or one.get("grant_type") != "authorization_code"
                or asked["redirect_uri"] != one.get("redirect_uri")
                or asked["client_id"] != one.get("client_id")
                or asked["code_challenge"] != challenge
            ):
                self._send(400, {"error": "invalid_grant"})
                return
            self._send(
                200,
                {
                    "access_token": provider.token(**provider.login),
                    "token_type": "Bearer",
                    "expires_in": 300,
                },
            )

        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            if path == "/authorize":
                self._authorize(parse_qs(query))
            elif self.path == "/.well-known/openid-configuration":
                self._send(
                    200,
                    {
                        "issuer": provider.issuer,
                        "jwks_uri": provider.issuer + "/jwks",
                        "introspection_endpoint": provider.issuer + "/introspect",
                        "authorization_endpoint": provider.issuer + "/authorize",
                        "token_endpoint": provider.issuer + "/token",
                        "code_challenge_methods_supported": ["S256"],
                        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                    },
                )
            elif self.path == "/jwks":
                provider.jwks_fetches += 1
                self._send(200, {"keys": [k.public_jwk() for k in provider.keys]})
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = parse_qs(self.rfile.read(length).decode())
            if self.path == "/token":
                self._token(form)
                return
            expected = "Basic " + base64.b64encode(f"{CLIENT[0]}:{CLIENT[1]}".encode()).decode()
            if self.path != "/introspect" or self.headers.get("Authorization") != expected:
                self._send(401, {"error": "invalid_client"})
                return
            token = form.get("token", [""])[0]
            self._send(200, provider.opaque.get(token, {"active": False}))

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    provider.issuer = f"http://127.0.0.1:{server.server_address[1]}/realms/test"
    # The paths above are under the issuer's path: serve them there.
    prefix = "/realms/test"
    original = Handler.do_GET, Handler.do_POST

    def strip(method: Any) -> Any:
        def handle(self: BaseHTTPRequestHandler) -> None:
            if self.path.startswith(prefix):
                self.path = self.path[len(prefix) :]
            method(self)

        return handle

    Handler.do_GET = strip(original[0])  # type: ignore[method-assign]
    Handler.do_POST = strip(original[1])  # type: ignore[method-assign]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()
