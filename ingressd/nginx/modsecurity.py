"""ModSecurity, the web application firewall: its files, http lines and location lines.  Pure.

    paths of the work dir       --config_files()--> modsecurity/modsecurity.conf (the base:
                                     DetectionOnly, body limits, audit log into logs/) and
                                     modsecurity/crs.conf (the OWASP CRS); ingressd.nginx.process
                                     writes them at start
    Configuration + WafDefaults --http_setup()--> WafHttp: load the module?  http lines:
                                     ``modsecurity on`` (ConfigMap), its snippet, the rule files
    ModSecurity + WafDefaults   --waf_location_lines()--> ``modsecurity on|off``, the location's
                                     inline rules

Rules are parsed once, at the http level: libmodsecurity parses every ``modsecurity_rules_file``
where it is written, so the CRS (900+ rules) in each location would cost its parse per location
in ``nginx -t`` and memory (benchmarks/RESULTS.md).  A location only switches ModSecurity on or
off and adds short inline rules, which libmodsecurity merges with the http level's (the
location's ``SecRuleEngine`` wins).  Within one level the first value of a setting read wins,
so the ConfigMap's snippet comes before the base configuration it overrides.  The CRS is loaded
when any location wants it; a location where it is on without the CRS removes the CRS's id
range (``SecRuleRemoveById 900000-999999``), which costs the same whether or not another
location loaded it, so a location's text depends on its own settings and the ConfigMap only.

With ``--routing lua`` the entry location has ModSecurity off: the transaction starts in the
named location of the route's settings class (after ``ngx.exec``), with that class's rules.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from ingressd.model import Configuration
from ingressd.model.settings import DEFAULT_SETTINGS, LocationSettings, ModSecurity
from ingressd.nginx.quoting import quote_modsecurity_rules, quote_variables

__all__ = [
    "CRS_RULE_IDS",
    "MODULE",
    "NO_WAF",
    "WafDefaults",
    "WafHttp",
    "config_files",
    "http_setup",
    "waf_location_lines",
]

MODULE = "/usr/share/nginx/modules/ngx_http_modsecurity_module.so"
#: The id range the OWASP Core Rule Set reserves for its rules.
CRS_RULE_IDS = "900000-999999"
#: Debian's modsecurity-crs: the setup, the two exclusion files and the rules.
CRS_SETUP = "/etc/modsecurity/crs/crs-setup.conf"
CRS_BEFORE = "/etc/modsecurity/crs/REQUEST-900-EXCLUSION-RULES-BEFORE-CRS.conf"
CRS_RULES = "/usr/share/modsecurity-crs/rules/*.conf"
CRS_AFTER = "/etc/modsecurity/crs/RESPONSE-999-EXCLUSION-RULES-AFTER-CRS.conf"
#: libnginx-mod-http-modsecurity's Unicode mapping (for t:urlDecodeUni).
UNICODE_MAPPING = "/etc/nginx/unicode.mapping"

BASE_FILE = "modsecurity.conf"
CRS_FILE = "crs.conf"


@dataclass(frozen=True, slots=True)
class WafDefaults:
    """The ConfigMap's WAF keys: what a location without its own annotations gets."""

    #: ``enable-modsecurity``: on at the http level.
    enable: bool = False
    #: ``enable-owasp-modsecurity-crs``: the CRS wherever ModSecurity is on.
    crs: bool = False
    #: ``modsecurity-snippet``: rules at the http level (the administrator's).
    snippet: str | None = None


#: The defaults without a ConfigMap: ModSecurity off unless an Ingress turns it on.
NO_WAF = WafDefaults()


@dataclass(frozen=True, slots=True)
class WafHttp:
    #: ``load_module`` the ModSecurity module (only when some location may run it).
    module: bool = False
    lines: tuple[str, ...] = ()


def _path(value: str) -> str:
    """A path ModSecurity's parser reads unquoted (it takes no spaces, even quoted)."""
    if not re.fullmatch(r"[A-Za-z0-9._/+@=,:-]+", value):
        raise ValueError(
            f"ModSecurity cannot use {value!r}: a --work-dir of letters, digits and "
            "'._/+@=,:-' is needed for the WAF"
        )
    return value


def config_files(modsecurity_dir: str, logs_dir: str, temp_dir: str) -> dict[str, str]:
    """The base configuration and the CRS include, by file name (in ``modsecurity_dir``)."""
    base = f"""\
# ModSecurity base configuration, written by ingressd at every start.
# DetectionOnly: rules are evaluated and logged, nothing is blocked until a
# modsecurity-snippet (ConfigMap or annotation) says "SecRuleEngine On".
SecRuleEngine DetectionOnly
SecRequestBodyAccess On
SecRequestBodyLimit 13107200
SecRequestBodyNoFilesLimit 131072
SecRequestBodyLimitAction Reject
SecRequestBodyJsonDepthLimit 512
SecArgumentsLimit 1000
SecRule REQUEST_HEADERS:Content-Type "^(?:application(?:/soap\\+|/)|text/)xml" \\
    "id:200000,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML"
SecRule REQUEST_HEADERS:Content-Type "^application/json" \\
    "id:200001,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"
SecRule &ARGS "@ge 1000" \\
    "id:200007,phase:2,t:none,log,deny,status:400,msg:'Too many arguments'"
SecRule REQBODY_ERROR "!@eq 0" \\
    "id:200002,phase:2,t:none,log,deny,status:400,msg:'Request body could not be parsed'"
SecRule MULTIPART_STRICT_ERROR "!@eq 0" \\
    "id:200003,phase:2,t:none,log,deny,status:400,msg:'Multipart body failed strict checks'"
SecRule MULTIPART_UNMATCHED_BOUNDARY "@eq 1" \\
    "id:200004,phase:2,t:none,log,deny,msg:'Multipart body with an unmatched boundary'"
SecRule TX:/^MSC_/ "!@streq 0" \\
    "id:200005,phase:2,t:none,deny,msg:'ModSecurity internal error: %{{MATCHED_VAR_NAME}}'"
SecPcreMatchLimit 1000
SecPcreMatchLimitRecursion 1000
SecResponseBodyAccess On
SecResponseBodyMimeType text/plain text/html text/xml
SecResponseBodyLimit 524288
SecResponseBodyLimitAction ProcessPartial
SecTmpDir {_path(temp_dir)}
SecDataDir {_path(temp_dir)}
SecAuditEngine RelevantOnly
SecAuditLogRelevantStatus "^(?:5|4(?!04))"
SecAuditLogParts ABIJDEFHZ
SecAuditLogType Serial
SecAuditLog {_path(logs_dir)}/modsec_audit.log
SecArgumentSeparator &
SecCookieFormat 0
SecUnicodeMapFile {UNICODE_MAPPING} 20127
SecStatusEngine Off
"""
    crs = f"""\
# The OWASP Core Rule Set (Debian's modsecurity-crs), written by ingressd at every start.
Include {CRS_SETUP}
Include {CRS_BEFORE}
Include {CRS_RULES}
Include {CRS_AFTER}
"""
    _path(modsecurity_dir)
    return {BASE_FILE: base, CRS_FILE: crs}


def _active(settings: ModSecurity | None, defaults: WafDefaults) -> bool:
    if settings is None or settings.enable is None:
        return defaults.enable
    return settings.enable


def http_setup(
    config: Configuration,
    defaults: WafDefaults,
    modsecurity_dir: str,
    *,
    also: Iterable[LocationSettings] = (),
) -> WafHttp:
    """Whether to load the module, and the http-level lines (rules parsed once, here).

    ``also``: the settings of locations rendered besides ``config``'s (``--routing lua``'s kept
    settings classes)."""
    module, crs = defaults.enable, defaults.crs
    every = (loc.settings for server in config.servers for loc in server.locations)
    for location_settings in itertools.chain(every, also):
        if location_settings is DEFAULT_SETTINGS:
            continue
        settings = location_settings.modsecurity
        if settings is None or not _active(settings, defaults):
            continue
        module = True
        crs = crs or settings.owasp_core_rules
        if crs:
            break
    if not module:
        return WafHttp()
    lines = [] if not defaults.enable else ["modsecurity on;"]
    if defaults.snippet is not None:
        # First: within one level the first SecRuleEngine (and other setting) read wins.
        lines.append(f"modsecurity_rules {quote_modsecurity_rules(defaults.snippet)};")
    lines.append(f'modsecurity_rules_file "{_path(modsecurity_dir)}/{BASE_FILE}";')
    if crs:
        lines.append(f'modsecurity_rules_file "{_path(modsecurity_dir)}/{CRS_FILE}";')
    return WafHttp(module=True, lines=tuple(lines))


def waf_location_lines(settings: ModSecurity | None, defaults: WafDefaults) -> list[str]:
    """``modsecurity on|off`` where it differs from the http level, and this location's rules:
    the CRS's range removed where it is not wanted, the annotation's rules."""
    if not _active(settings, defaults):
        return ["modsecurity off;"] if defaults.enable else []
    lines = [] if defaults.enable else ["modsecurity on;"]
    rules: list[str] = []
    if not defaults.crs and not (settings is not None and settings.owasp_core_rules):
        rules.append(f"SecRuleRemoveById {CRS_RULE_IDS}")
    if settings is not None and settings.rules is not None:
        rules.append(settings.rules)
    if rules:
        lines.append(f"modsecurity_rules {quote_modsecurity_rules(chr(10).join(rules))};")
    if settings is not None and settings.transaction_id is not None:
        lines.append(f"modsecurity_transaction_id {quote_variables(settings.transaction_id)};")
    return lines
