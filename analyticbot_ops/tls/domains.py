"""Public domain names for ACME: whether a public CA could issue a certificate for a name, and if not, why."""

from __future__ import annotations

import re

from ..errors import BadInput
from .certs import parse_ip

# Special-use names (RFC 2606, RFC 6761, RFC 6762, ICANN's .internal) that no public ACME CA will issue for.
TEST_TLDS = frozenset({"local", "internal", "test", "example", "invalid"})
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def validate_domain(domain: str, *, allow_test_tlds: bool = False) -> str:
    """Return the domain lower-cased if a public ACME CA could issue for it; BadInput saying why not otherwise."""
    name = domain.strip().lower()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise BadInput("the domain is empty; pass the public DNS name the proxy serves, e.g. bot.example.com")
    if name.startswith("*."):
        raise BadInput(f"{domain!r} is a wildcard; HTTP-01 validation cannot issue wildcards, name one host")
    if any(character.isspace() for character in name):
        raise BadInput(f"{domain!r} contains white space; a DNS name is letters, digits, hyphens and dots")
    if parse_ip(name) is not None:
        raise BadInput(f"{domain!r} is an IP address; ACME needs a DNS name (use `invoke tls.dev` for local use)")
    if name == "localhost" or name.endswith(".localhost"):
        raise BadInput(f"{domain!r} is a localhost name; use `invoke tls.dev` for local certificates")
    if len(name) > 253:
        raise BadInput(f"the domain {name[:40]}... is {len(name)} characters, longer than 253")
    labels = name.split(".")
    if len(labels) < 2:
        raise BadInput(f"{domain!r} is a single-label name; ACME needs a fully qualified name like bot.example.com")
    for label in labels:
        if len(label) > 63:
            raise BadInput(f"{domain!r} has a label longer than 63 characters: {label[:20]}...")
        if not _LABEL.match(label):
            raise BadInput(
                f"{domain!r} has an invalid label {label!r}: use letters, digits and inner hyphens "
                "(internationalised names in their xn-- form)"
            )
    if labels[-1].isdigit():
        raise BadInput(f"{domain!r} ends in an all-numeric label; that is no DNS top-level domain")
    if labels[-1] in TEST_TLDS and not allow_test_tlds:
        raise BadInput(f"{domain!r} is under the reserved .{labels[-1]} domain; no public CA issues for it")
    return name
