"""Grammar checks: each validator accepts what is safe for Kubernetes and nginx, says why not."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ingressd.model import validation as v

Validator = Callable[[str], str | None]

VALID: list[tuple[Validator, str]] = [
    (v.validate_hostname, "foo.com"),
    (v.validate_hostname, "a"),
    (v.validate_hostname, "www.zkj.com"),
    (v.validate_hostname, "x-1.y-2.example"),
    (v.validate_hostname, "a" * 63 + ".com"),
    (v.validate_hostname, ".".join(["a" * 61] * 4)),
    (v.validate_hostname, "1.2.3.com"),
    (v.validate_wildcard_host, "*.foo.com"),
    (v.validate_wildcard_host, "*.a.b.c"),
    (v.validate_host, "*.foo.com"),
    (v.validate_host, "foo.com"),
    (v.validate_object_name, "tls-secret.v1"),
    (v.validate_namespace, "kube-system"),
    (v.validate_service_name, "web-1"),
    (v.validate_path, "/"),
    (v.validate_path, "/api/v1"),
    (v.validate_path, "/api/"),
    (v.validate_path, "/a.b/c_d/e~f-g"),
    (v.validate_path, "/!*(),:@+=&"),
    (v.validate_path, "/.well-known/acme"),
    (v.validate_path, "/a..b/..c/.d"),
    (v.validate_path, "/" + "a" * 1023),
    (v.validate_port_name, "http"),
    (v.validate_port_name, "h2c-8080"),
    (v.validate_port_name, "a" * 15),
]


@pytest.mark.parametrize(
    ("validator", "value"), VALID, ids=[f"{f.__name__}-{x[:30]}" for f, x in VALID]
)
def test_valid_values_pass(validator: Validator, value: str) -> None:
    assert validator(value) is None


INVALID: list[tuple[Validator, str, str]] = [
    (v.validate_hostname, "", "must not be empty"),
    (v.validate_hostname, "Foo.com", "must be lowercase"),
    (v.validate_hostname, "foo_bar.com", "must not contain '_'"),
    (v.validate_hostname, "foo..com", "empty label"),
    (v.validate_hostname, "foo.com.", "empty label"),
    (v.validate_hostname, ".foo.com", "empty label"),
    (v.validate_hostname, "-foo.com", "must start and end"),
    (v.validate_hostname, "foo-.com", "must start and end"),
    (v.validate_hostname, "a" * 64 + ".com", "at most 63"),
    (v.validate_hostname, ".".join(["a" * 63] * 4) + ".ab", "at most 253"),
    (v.validate_hostname, "1.2.3.4", "not an IP address"),
    (v.validate_hostname, "foo.com;", "must not contain ';'"),
    (v.validate_hostname, "foo.com{", "must not contain '{'"),
    (v.validate_hostname, "foo com", "must not contain ' '"),
    (v.validate_hostname, "*.foo.com", "must not contain '*'"),
    (v.validate_wildcard_host, "*.com", "at least two labels"),
    (v.validate_wildcard_host, "*foo.com", "whole first label"),
    (v.validate_wildcard_host, "foo.*.com", "whole first label"),
    (v.validate_wildcard_host, "*.*.foo.com", "only one '*'"),
    (v.validate_wildcard_host, "*", "whole first label"),
    (v.validate_wildcard_host, "*.Foo.com", "must be lowercase"),
    (v.validate_host, "a.*.com", "whole first label"),
    (v.validate_host, "*.com", "at least two labels"),
    (v.validate_object_name, "Secret", "must be lowercase"),
    (v.validate_object_name, "", "must not be empty"),
    (v.validate_namespace, "a.b", "must not contain '.'"),
    (v.validate_namespace, "a" * 64, "at most 63"),
    (v.validate_service_name, "1web", "must start with a lowercase letter"),
    (v.validate_service_name, "web.svc", "must not contain '.'"),
    (v.validate_path, "", "must start with '/'"),
    (v.validate_path, "api", "must start with '/'"),
    (v.validate_path, "/a b", "must not contain ' '"),
    (v.validate_path, "/a\tb", "must not contain '\\t'"),
    (v.validate_path, "/a\nb", "must not contain '\\n'"),
    (v.validate_path, "/a\x00b", "must not contain '\\x00'"),
    (v.validate_path, '/a"b', "must not contain '\"'"),
    (v.validate_path, "/a'b", 'must not contain "\'"'),
    (v.validate_path, "/a\\b", "must not contain '\\\\'"),
    (v.validate_path, "/$host", "must not contain '$'"),
    (v.validate_path, "/{a}", "must not contain '{'"),
    (v.validate_path, "/a}", "must not contain '}'"),
    (v.validate_path, "/a;b", "must not contain ';'"),
    (v.validate_path, "/a#b", "must not contain '#'"),
    (v.validate_path, "/a%20b", "must not contain '%'"),
    (v.validate_path, "/a?b", "must not contain '?'"),
    (v.validate_path, "/caf\u00e9", "must not contain '\u00e9'"),
    (v.validate_path, "/a//b", "must not contain '//'"),
    (v.validate_path, "//", "must not contain '//'"),
    (v.validate_path, "/a/./b", "'.' segment"),
    (v.validate_path, "/a/../b", "'..' segment"),
    (v.validate_path, "/a/.", "'.' segment"),
    (v.validate_path, "/a/..", "'..' segment"),
    (v.validate_path, "/..", "'..' segment"),
    (v.validate_path, "/" + "a" * 1024, "at most 1024"),
    (v.validate_port_name, "", "must not be empty"),
    (v.validate_port_name, "a" * 16, "at most 15"),
    (v.validate_port_name, "HTTP", "only lowercase"),
    (v.validate_port_name, "8080", "at least one letter"),
    (v.validate_port_name, "-http", "must not start or end"),
    (v.validate_port_name, "http-", "must not start or end"),
    (v.validate_port_name, "h--p", "must not contain '--'"),
    (v.validate_port_name, "h_p", "only lowercase"),
]


@pytest.mark.parametrize(
    ("validator", "value", "reason"),
    INVALID,
    ids=[f"{f.__name__}-{x[:24]!r}" for f, x, _ in INVALID],
)
def test_invalid_values_name_the_reason(validator: Validator, value: str, reason: str) -> None:
    got = validator(value)
    assert got is not None
    assert reason in got


@pytest.mark.parametrize(
    ("number", "valid"),
    [(1, True), (80, True), (65535, True), (0, False), (-1, False), (65536, False)],
    ids=["1", "80", "65535", "0", "negative", "65536"],
)
def test_port_number_range(number: int, valid: bool) -> None:
    assert (v.validate_port_number(number) is None) is valid


def test_port_number_rejects_bool() -> None:
    assert v.validate_port_number(True) == "must be an integer"
