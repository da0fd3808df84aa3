"""ModSecurity annotations: ``modsecurity-snippet`` and ``modsecurity-transaction-id``.  Pure.

    modsecurity-snippet, snippets allowed      --rules_snippet()--> the text as written
    modsecurity-snippet, snippets not allowed  --safe_rules()-----> the text re-rendered from
        its parsed form: ``SecRuleEngine On|DetectionOnly|Off`` and ``SecRuleRemoveById <ids>``
        lines only, anything else raises InvalidValue
    modsecurity-transaction-id                 --transaction_id()--> an nginx variable
        -> LocationSettings.modsecurity -> ingressd.nginx.modsecurity quotes it into nginx.conf

The safe subset turns blocking on or off and removes rules by id; it cannot add a rule, an
action or an ``Include``, so an Ingress author without snippet rights can tune the WAF of their
own paths and nothing else.
"""

from __future__ import annotations

import re

from ingressd.annotations.values import InvalidValue
from ingressd.annotations.variables import AllowList, Grammar

__all__ = [
    "MAX_RULES_LENGTH",
    "RULE_ENGINE_MODES",
    "TRANSACTION_VARIABLES",
    "rules_snippet",
    "safe_rules",
    "transaction_id",
]

#: Longest ``modsecurity-snippet`` accepted, in bytes once quoted for nginx.conf (nginx reads
#: a parameter of at most 4000 bytes; the rest is room for the lines ingressd adds).
MAX_RULES_LENGTH = 3900
#: ``SecRuleEngine`` values, as ModSecurity spells them.
RULE_ENGINE_MODES = ("On", "DetectionOnly", "Off")
#: Largest rule id ModSecurity reads (a C ``int``).
MAX_RULE_ID = 2**31 - 1

_ENGINE = {mode.lower(): mode for mode in RULE_ENGINE_MODES}
_ID_OR_RANGE = re.compile(r"([0-9]{1,10})(?:-([0-9]{1,10}))?\Z")


def rules_snippet(text: str) -> str:
    """ModSecurity rules written by someone trusted with snippets: size and control characters
    are checked; ``nginx -t`` (libmodsecurity's parser) judges the rest."""
    if re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", text):
        raise InvalidValue("must not contain control characters other than tabs and newlines")
    if not text.strip():
        raise InvalidValue("must not be empty")
    _check_length(text)
    return text


def _check_length(text: str) -> None:
    """nginx.conf holds the rules single-quoted with backslash escapes."""
    size = len(text.encode()) + sum(text.count(c) for c in "\\'\n\r\t")
    if size > MAX_RULES_LENGTH:
        raise InvalidValue(
            f"takes {size} bytes quoted for nginx.conf, at most {MAX_RULES_LENGTH} are accepted"
        )


def safe_rules(text: str) -> str:
    """The safe subset, re-rendered: one ``SecRuleEngine`` line at most (first), then the
    ``SecRuleRemoveById`` ids and ranges on one line.  Blank and ``#`` comment lines are
    dropped; anything else raises ``InvalidValue`` naming the line."""
    engine: str | None = None
    removed: list[str] = []
    _check_length(text)
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        directive, _, rest = line.partition(" ")
        args = rest.split()
        where = f"line {number} ({_shown(line)})"
        if directive.lower() == "secruleengine":
            mode = _ENGINE.get(args[0].lower()) if len(args) == 1 else None
            if mode is None:
                raise InvalidValue(f"{where}: SecRuleEngine takes On, DetectionOnly or Off")
            if engine is not None and engine != mode:
                raise InvalidValue(f"{where}: SecRuleEngine is set twice")
            engine = mode
        elif directive.lower() == "secruleremovebyid":
            if not args:
                raise InvalidValue(f"{where}: SecRuleRemoveById needs rule ids")
            removed += (_id_or_range(arg, where) for arg in args)
        else:
            raise InvalidValue(
                f"{where}: without --allow-snippet-annotations only SecRuleEngine and "
                "SecRuleRemoveById lines are accepted"
            )
    if engine is None and not removed:
        raise InvalidValue("has no SecRuleEngine or SecRuleRemoveById line")
    lines = [] if engine is None else [f"SecRuleEngine {engine}"]
    if removed:
        lines.append("SecRuleRemoveById " + " ".join(dict.fromkeys(removed)))
    return "\n".join(lines)


def _id_or_range(arg: str, where: str) -> str:
    match = _ID_OR_RANGE.match(arg)
    if match is None:
        raise InvalidValue(f"{where}: {arg!r} is not a rule id or a range of ids (942100-942999)")
    low = int(match.group(1))
    high = int(match.group(2)) if match.group(2) is not None else low
    if not 1 <= low <= high <= MAX_RULE_ID:
        raise InvalidValue(
            f"{where}: {arg!r}: ids run from 1 to {MAX_RULE_ID}, a range from low to high"
        )
    return str(low) if match.group(2) is None else f"{low}-{high}"


def _shown(line: str, limit: int = 40) -> str:
    return line if len(line) <= limit else line[: limit - 3] + "..."


#: Variables a transaction id may use: the request id and the request's own headers, cookies
#: and arguments (a variable nginx does not know would fail ``nginx -t``).
TRANSACTION_VARIABLES = AllowList(
    frozenset({"request_id", "req_id", "connection", "msec", "pid"}),
    prefixes=("http_", "cookie_", "arg_"),
)
_TRANSACTION_ID = Grammar(
    TRANSACTION_VARIABLES,
    re.compile(r"[A-Za-z0-9_.-]*"),
    "a transaction id",
    shown="letters, digits, '_.-'",
)


def transaction_id(text: str) -> str:
    """``modsecurity-transaction-id``: nginx variables (``$request_id``, ``$http_x_trace``,
    ``${req_id}``) and literal ``[A-Za-z0-9_.-]`` text, at most 128 characters."""
    value = text.strip()
    if not value or len(value) > 128:
        raise InvalidValue("must be 1-128 characters")
    return _TRANSACTION_ID.checked(value)
