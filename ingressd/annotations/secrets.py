"""Secrets that annotations refer to, read into the files nginx needs.  Pure.

    auth-secret       Secret --htpasswd_file()-->  SecretFile("auth")   (auth_basic_user_file)
    proxy-ssl-secret  Secret --proxy_ssl_files()--> SecretFile("ca") [+ SecretFile("client")]
    auth-tls-secret   Secret --client_auth_files()--> SecretFile("client-ca")
                                                      [+ SecretFile("client-crl")]

Each reader returns the file(s) or ``(field, reason)`` naming what is wrong.  Contents are
checked line by line (htpasswd) or parsed (PEM), so a Secret cannot smuggle anything into nginx
but a user list or certificates; the files are written 0600 by ``ingressd.nginx.applying``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ingressd.model import ObjectKey
from ingressd.model.settings import SecretFile

__all__ = ["client_auth_files", "htpasswd_file", "proxy_ssl_files"]

#: ``user:hash``: a user name without ``:`` or spaces; a hash of printable characters.
_HTPASSWD_LINE = re.compile(r"[^:\s#][^:\s]{0,255}:[\x21-\x7e]{1,512}\Z")
_MAX_USERS = 10000


def _decode(raw: object, name: str) -> str | tuple[str, str]:
    if not isinstance(raw, dict):
        return ("object", "must be a mapping")
    data = raw.get("data")
    if not isinstance(data, dict):
        return ("data", f"must be a mapping holding {name}")
    value = data.get(name)
    if value is None:
        return (f"data.{name}", "missing")
    if not isinstance(value, str):
        return (f"data.{name}", "must be a base64 string")
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return (f"data.{name}", "is not base64 of UTF-8 text")


def _ca_certificates(raw: object) -> list[x509.Certificate] | tuple[str, str]:
    """The certificates of ``data["ca.crt"]``, or (field, reason)."""
    text = _decode(raw, "ca.crt")
    if isinstance(text, tuple):
        return text
    try:
        return x509.load_pem_x509_certificates(text.encode())
    except Exception as exc:  # untrusted input: any parser failure is a reason
        return ("data.ca.crt", f"is not PEM certificates: {exc}")


def _pem(certificates: list[x509.Certificate]) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certificates)


def _file(key: ObjectKey, purpose: str, content: str) -> SecretFile:
    return SecretFile(
        secret=key,
        purpose=purpose,
        sha256=hashlib.sha256(content.encode()).hexdigest(),
        content=content,
    )


def htpasswd_file(key: ObjectKey, raw: object, secret_type: str) -> SecretFile | tuple[str, str]:
    """The htpasswd file of an ``auth-secret``.

    ``auth-file``: key ``auth`` holds htpasswd lines.  ``auth-map``: every key is a user name
    and its value the password hash.
    """
    lines: list[str] = []
    if secret_type == "auth-map":
        if not isinstance(raw, dict) or not isinstance(raw.get("data"), dict):
            return ("data", "must be a mapping of user names to password hashes")
        for user in sorted(raw["data"]):
            value = _decode(raw, user)
            if isinstance(value, tuple):
                return value
            lines.append(f"{user}:{value.strip()}")
        where = "data"
    else:
        text = _decode(raw, "auth")
        if isinstance(text, tuple):
            return text
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        where = "data.auth"
    if not lines:
        return (where, "holds no user")
    if len(lines) > _MAX_USERS:
        return (where, f"holds more than {_MAX_USERS} users")
    for i, line in enumerate(lines):
        if not _HTPASSWD_LINE.match(line):
            return (where, f"line {i + 1} is not 'user:password-hash'")
    return _file(key, "auth", "\n".join(lines) + "\n")


def proxy_ssl_files(
    key: ObjectKey, raw: object
) -> tuple[SecretFile | None, SecretFile | None] | tuple[str, str]:
    """``(CA bundle, client certificate + key)`` of a ``proxy-ssl-secret``; either may be absent
    (``None``) but not both."""
    ca_file = client = None
    data = raw.get("data") if isinstance(raw, dict) else None
    if not isinstance(data, dict):
        return ("data", "must be a mapping holding ca.crt (and tls.crt, tls.key)")
    if "ca.crt" in data:
        cas = _ca_certificates(raw)
        if isinstance(cas, tuple):
            return cas
        ca_file = _file(key, "ca", _pem(cas))
    if "tls.crt" in data or "tls.key" in data:
        crt = _decode(raw, "tls.crt")
        if isinstance(crt, tuple):
            return crt
        key_text = _decode(raw, "tls.key")
        if isinstance(key_text, tuple):
            return key_text
        try:
            chain = x509.load_pem_x509_certificates(crt.encode())
        except Exception as exc:  # untrusted input
            return ("data.tls.crt", f"is not PEM certificates: {exc}")
        try:
            private = serialization.load_pem_private_key(
                key_text.encode(), password=None, unsafe_skip_rsa_key_validation=True
            )
        except Exception as exc:  # untrusted input
            return ("data.tls.key", f"is not an unencrypted PEM private key: {exc}")
        pem = "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in chain)
        pem += private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        client = _file(key, "client", pem)
    if ca_file is None and client is None:
        return ("data", "must hold ca.crt or tls.crt and tls.key")
    return ca_file, client


_CRL_BLOCK = re.compile(r"-----BEGIN X509 CRL-----\r?\n.+?-----END X509 CRL-----", re.DOTALL)


def client_auth_files(
    key: ObjectKey, raw: object
) -> tuple[SecretFile, SecretFile | None] | tuple[str, str]:
    """``(CA bundle, CRL or None)`` of an ``auth-tls-secret``: ``ca.crt`` (PEM certificates,
    required) and ``ca.crl`` (PEM CRLs, optional), each CRL signed by a certificate of
    ``ca.crt`` (a CRL nobody can check would make nginx refuse every client, or worse, one
    forged by anybody would be trusted)."""
    data = raw.get("data") if isinstance(raw, dict) else None
    if not isinstance(data, dict) or "ca.crt" not in data:
        return ("data.ca.crt", "missing: client certificate authentication needs the CA")
    cas = _ca_certificates(raw)
    if isinstance(cas, tuple):
        return cas
    ca_pem = _pem(cas)
    crl_file = None
    if "ca.crl" in data:
        crl_text = _decode(raw, "ca.crl")
        if isinstance(crl_text, tuple):
            return crl_text
        blocks = _CRL_BLOCK.findall(crl_text)
        if not blocks:
            return ("data.ca.crl", "holds no PEM CRL (-----BEGIN X509 CRL-----)")
        pems: list[str] = []
        for index, block in enumerate(blocks):
            try:
                crl = x509.load_pem_x509_crl(block.encode())
            except Exception as exc:  # untrusted input
                return ("data.ca.crl", f"CRL {index + 1} does not parse: {exc}")
            if not any(_signed_by(crl, ca) for ca in cas):
                return (
                    "data.ca.crl",
                    f"CRL {index + 1} (issuer {crl.issuer.rfc4514_string()}) is not signed by "
                    "a certificate of ca.crt",
                )
            pems.append(crl.public_bytes(serialization.Encoding.PEM).decode())
        crl_file = _file(key, "client-crl", "".join(pems))
    return _file(key, "client-ca", ca_pem), crl_file


def _signed_by(crl: x509.CertificateRevocationList, ca: x509.Certificate) -> bool:
    if crl.issuer != ca.subject:
        return False
    try:
        return bool(crl.is_signature_valid(ca.public_key()))  # type: ignore[arg-type]
    except Exception:  # an unsupported key type cannot have signed it for nginx either
        return False
