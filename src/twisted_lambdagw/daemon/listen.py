"""
Listening endpoints, with the TLS settings decided here.

``listen`` takes Twisted endpoint strings, and every kind but ``ssl:`` is
handed to Twisted as written.  ``ssl:`` endpoints are built here instead, with
the same syntax and options, because the gateway faces the internet and must
not inherit its TLS floor from whichever Twisted happens to be installed: the
minimum version is set explicitly (TLS 1.2, or 1.3 when configured), the
``sslmethod`` option (which would replace that minimum by one fixed protocol
method) is refused, and a missing, unreadable or mismatched key or
certificate is reported naming the file, when the endpoint is built, before
anything listens.

HTTP/2 needs nothing here: the Site offers ``h2`` through ALPN when Twisted's
HTTP/2 support (the ``h2`` and ``priority`` packages) is installed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL
from twisted.internet.endpoints import SSL4ServerEndpoint, serverFromString
from twisted.internet.interfaces import IOpenSSLContextFactory, IStreamServerEndpoint
from twisted.internet.ssl import CertificateOptions, DiffieHellmanParameters, TLSVersion
from twisted.python.filepath import FilePath
from zope.interface import implementer

from twisted_lambdagw.core.endpoint_strings import split_description

TLS_MINIMUMS = {"1.2": TLSVersion.TLSv1_2, "1.3": TLSVersion.TLSv1_3}
SSL_OPTIONS = frozenset(
    {"port", "interface", "backlog", "privateKey", "certKey", "extraCertChain", "dhParameters"}
)


def http2_available() -> bool:
    """
    Whether Twisted can speak HTTP/2 here (the ``http2`` extra is installed).
    """
    from twisted.web import http

    return bool(http.H2_ENABLED)


def server_endpoint(
    reactor: Any,
    description: str,
    *,
    tls_min_version: str = "1.2",
    tls_contexts: list[ReloadableTLS] | None = None,
) -> IStreamServerEndpoint:
    """
    The endpoint a ``listen`` line describes; raises ValueError (one line) if bad.

    An ``ssl:`` line's L{ReloadableTLS} is appended to C{tls_contexts}, if
    given, for a reload to read its files again.
    """
    args, kwargs = split_description(description)
    if args and args[0].lower() == "ssl":
        return tls_endpoint(
            reactor, args[1:], kwargs, tls_min_version=tls_min_version, tls_contexts=tls_contexts
        )
    endpoint: IStreamServerEndpoint = serverFromString(reactor, description)
    return endpoint


def tls_endpoint(
    reactor: Any,
    args: list[str],
    kwargs: dict[str, str],
    *,
    tls_min_version: str = "1.2",
    tls_contexts: list[ReloadableTLS] | None = None,
) -> SSL4ServerEndpoint:
    """
    An ``ssl:`` endpoint from its parameters, with the key and certificate loaded.
    """
    if "sslmethod" in kwargs:
        raise ValueError(
            "sslmethod is not supported: TLS 1.2 or later is always required"
            " (set [gateway] tls_min_version = 1.3 to require TLS 1.3)"
        )
    unknown = sorted(set(kwargs) - SSL_OPTIONS)
    if unknown:
        raise ValueError(
            f"unknown ssl option {unknown[0]!r} (known: {', '.join(sorted(SSL_OPTIONS))})"
        )
    if len(args) > 1 or (args and "port" in kwargs):
        raise ValueError("give the port once, then key=value options")
    port = _number("port", args[0] if args else kwargs.get("port", ""), 0, 65535)
    backlog = _number("backlog", kwargs.get("backlog", "50"), 1, 65535)
    key_file = kwargs.get("privateKey", "server.pem")
    cert_file = kwargs.get("certKey", key_file)
    options = ReloadableTLS(
        functools.partial(
            certificate_options,
            key_file,
            cert_file,
            chain_file=kwargs.get("extraCertChain"),
            dh_file=kwargs.get("dhParameters"),
            tls_min_version=tls_min_version,
        )
    )
    if tls_contexts is not None:
        tls_contexts.append(options)
    return SSL4ServerEndpoint(
        reactor,
        port,
        options,
        backlog=backlog,
        interface=kwargs.get("interface", ""),
    )


@implementer(IOpenSSLContextFactory)
class ReloadableTLS:
    """
    A listener's TLS settings, read again from their files on L{reload}.

    Twisted's TLS wrapper asks its context factory for the OpenSSL context
    once per new connection (C{getContext}); this one hands out the context
    of the certificate loaded last.  So after a reload the next handshake
    uses the new key and certificate, while connections already set up keep
    the context they were made with, and nothing is dropped.

    :param load: reads the key and certificate files into checked
        L{CertificateOptions}; raises ValueError (one line) if they are bad.
    """

    def __init__(self, load: Callable[[], CertificateOptions]) -> None:
        self._load = load
        self.options = load()
        """The settings new connections get."""

    def getContext(self) -> SSL.Context:
        """
        The OpenSSL context for a new connection: the latest certificate's.
        """
        return self.options.getContext()

    def reload(self) -> None:
        """
        Read the files again; raises ValueError, keeping the old ones, if bad.
        """
        self.options = self._load()


def certificate_options(
    key_file: str,
    cert_file: str,
    *,
    chain_file: str | None = None,
    dh_file: str | None = None,
    tls_min_version: str = "1.2",
) -> CertificateOptions:
    """
    Server TLS options for a key and certificate, checked to work together.
    """
    if tls_min_version not in TLS_MINIMUMS:
        raise ValueError(f"unsupported TLS minimum {tls_min_version!r}")
    key_pem, cert_pem = _read("privateKey", key_file), _read("certKey", cert_file)
    certificate = _certificates("certKey", cert_file, cert_pem)[0]
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise ValueError(f"privateKey {key_file!r}: the key is encrypted") from None
    except ValueError:
        raise ValueError(f"privateKey {key_file!r}: no PEM private key in the file") from None
    chain = None
    if chain_file is not None:
        chain = _certificates("extraCertChain", chain_file, _read("extraCertChain", chain_file))
    dh = None
    if dh_file is not None:
        _read("dhParameters", dh_file)
        dh = DiffieHellmanParameters.fromFile(FilePath(dh_file))
    # CertificateOptions hands these straight to pyOpenSSL, which takes
    # cryptography's objects (and deprecates its own X509 and PKey).
    options = CertificateOptions(
        privateKey=key,  # type: ignore[arg-type]
        certificate=certificate,  # type: ignore[arg-type]
        extraCertChain=chain,  # type: ignore[arg-type]
        dhParameters=dh,
        raiseMinimumTo=TLS_MINIMUMS[tls_min_version],
    )
    try:
        # Builds (and caches) the OpenSSL context now, which checks that the
        # key belongs to the certificate.
        options.getContext()
    except Exception as e:
        raise ValueError(
            f"privateKey {key_file!r} and certKey {cert_file!r} do not work together: "
            f"{_openssl_message(e)}"
        ) from None
    return options


def _number(name: str, text: str, low: int, high: int) -> int:
    if not text.isdigit() or not low <= int(text) <= high:
        raise ValueError(f"{name} must be a number from {low} to {high}, not {text!r}")
    return int(text)


def _read(option: str, path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ValueError(f"{option} {path!r}: cannot read: {e.strerror or e}") from None


def _certificates(option: str, path: str, pem: bytes) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError:
        certificates = []
    if not certificates:
        raise ValueError(f"{option} {path!r}: no PEM certificate in the file")
    return certificates


def _openssl_message(error: Exception) -> str:
    # pyOpenSSL errors carry a list of (library, function, reason) tuples.
    if error.args and isinstance(error.args[0], list):
        reasons = [str(entry[-1]) for entry in error.args[0] if isinstance(entry, tuple) and entry]
        if reasons:
            return "; ".join(reasons)
    return " ".join(str(error).split()) or type(error).__name__
