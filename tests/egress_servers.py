"""What a corporate network puts between the gateway and a provider, for e2e tests of
``providers[].tls`` and ``providers[].proxy``:

- :class:`PrivateCA`: a certificate authority made in the test (``cryptography``) issuing the
  upstream's server certificate and the gateway's client certificate, written as PEM files;
- :class:`TlsUpstream`: an OpenAI-shaped upstream serving HTTPS with a certificate of that CA,
  optionally requiring a client certificate (mutual TLS); it answers ``tls:<the model>`` and
  records the client certificate's common name of each connection;
- :class:`TlsFront`: HTTPS with a certificate of that CA in front of a plain-HTTP server (the
  mock upstream), so every provider format it serves is reached over TLS;
- :class:`ConnectProxy`: an HTTP proxy tunnelling (CONNECT) and forwarding requests in the
  absolute form (``POST http://host/path``), counting both, optionally requiring Basic
  credentials (407 otherwise).

Each runs its own event loop in a thread (tests/threaded_server.py), on a free port.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import ipaddress
import json
import ssl
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.threaded_server import Handler, ThreadedServer


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class PrivateCA:
    """A CA whose certificate is written to ``directory/<name>-ca.pem``; issues leaf certificates."""

    def __init__(self, directory: Path, name: str = "test") -> None:
        self.directory = directory
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(_name(f"{name} private CA"))
            .issuer_name(_name(f"{name} private CA"))
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.cert_file = directory / f"{name}-ca.pem"
        self.cert_file.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, common_name: str, *, client: bool = False) -> tuple[Path, Path]:
        """(certificate file, key file) for 127.0.0.1 (a server) or a client named ``common_name``."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            # Python 3.13's default context verifies strictly (VERIFY_X509_STRICT): a certificate
            # an authority issued must name that authority's key, as RFC 5280 requires.
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        )
        if not client:
            here = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
            builder = builder.add_extension(x509.SubjectAlternativeName([here]), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        cert_file = self.directory / f"{common_name}.pem"
        key_file = self.directory / f"{common_name}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(_pem_key(key))
        return cert_file, key_file


class _Threaded(ThreadedServer):
    """A test server whose refused TLS handshakes (no client certificate) are not printed."""

    def __init__(self, handler: Handler, context: ssl.SSLContext | None = None) -> None:
        super().__init__(handler, context, quiet=True)


async def _head(reader: asyncio.StreamReader) -> tuple[str, dict[str, str]] | None:
    """A request's first line and headers (names lower case); None at the connection's end."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ssl.SSLError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    return lines[0], headers


class TlsUpstream(_Threaded):
    def __init__(self, cert_file: Path, key_file: Path, client_ca: Path | None = None) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_file, key_file)
        if client_ca is not None:  # mutual TLS: a client without a certificate of this CA is refused
            context.load_verify_locations(cafile=client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
        self.clients: list[str | None] = []  # per connection: its client certificate's common name
        self.requests = 0
        super().__init__(self._serve, context)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/v1"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peercert")
        names = [v for rdn in (peer or {}).get("subject", ()) for k, v in rdn if k == "commonName"]
        self.clients.append(names[0] if names else None)
        try:
            while (request := await _head(reader)) is not None:
                length = int(request[1].get("content-length", "0"))
                body = json.loads(await reader.readexactly(length)) if length else {}
                self.requests += 1
                writer.write(_chat_answer(f"tls:{body.get('model')}"))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()


class TlsFront(_Threaded):
    """TLS terminated here, the bytes passed on to 127.0.0.1:``backend``."""

    def __init__(self, cert_file: Path, key_file: Path, backend: int) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_file, key_file)
        self._backend = backend
        super().__init__(self._serve, context)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            backend_reader, backend_writer = await asyncio.open_connection("127.0.0.1", self._backend)
            await asyncio.gather(_pipe(reader, backend_writer), _pipe(backend_reader, writer))
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


def _chat_answer(text: str) -> bytes:
    body = json.dumps({
        "id": "chatcmpl-tls", "object": "chat.completion", "created": 1, "model": "tls",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }).encode()
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


class ConnectProxy(_Threaded):
    """Tunnels and forwards; ``credentials`` (user, password): anything else is answered 407."""

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self._expected = None
        if credentials is not None:
            token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
            self._expected = f"Basic {token}"
        self.tunnels = 0  # CONNECTs accepted
        self.refused = 0  # CONNECTs and forwarded requests answered 407
        self.forwarded = 0  # requests in the absolute form passed on (one per connection)
        self.targets: list[str] = []
        super().__init__(self._serve)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await _head(reader)
            if request is None:
                return
            method, target, version = request[0].split(" ", 2)
            if self._expected is not None and request[1].get("proxy-authorization") != self._expected:
                self.refused += 1
                writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                             b"Proxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n")
                return
            if method != "CONNECT":
                await self._forward(method, target, version, request[1], reader, writer)
                return
            host, _, port = target.rpartition(":")
            upstream_reader, upstream_writer = await asyncio.open_connection(host.strip("[]"), int(port))
            self.tunnels += 1
            self.targets.append(target)
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        except (ConnectionError, ValueError):
            pass
        finally:
            writer.close()


    async def _forward(self, method: str, target: str, version: str, headers: dict[str, str],
                       reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One request in the absolute form, sent on in the origin form (its connection closed
        after the answer), without the Proxy-Authorization meant for this proxy."""
        url = urlsplit(target)
        upstream_reader, upstream_writer = await asyncio.open_connection(url.hostname, url.port or 80)
        self.forwarded += 1
        path = url.path + (f"?{url.query}" if url.query else "")
        kept = {k: v for k, v in headers.items() if k not in ("proxy-authorization", "connection")}
        head = "".join(f"{k}: {v}\r\n" for k, v in kept.items())
        upstream_writer.write(f"{method} {path} {version}\r\n{head}connection: close\r\n\r\n".encode())
        length = int(headers.get("content-length", "0"))
        upstream_writer.write(await reader.readexactly(length))
        await _pipe(upstream_reader, writer)
        upstream_writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()
