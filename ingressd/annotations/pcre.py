"""PCRE: a regular expression checked by the engines that will run it.  Pure.

    "/api/v[0-9]+" --pcre_error()--> None                 (both engines compile it)
    "/a/[[:foo:]]" --pcre_error()--> "PCRE2: unknown POSIX class name at offset 10"

nginx's ``location ~*`` regexes run on PCRE2 (Debian's nginx links libpcre2-8), while
lua-nginx-module's ``ngx.re`` (the Lua router, ``--routing lua``) runs on PCRE (libpcre.so.3).
Python's ``re`` accepts patterns both refuse (POSIX classes such as ``[[:foo:]]``, ``(?a:...)``)
and the other way round, so a pattern is accepted only when both libraries compile it, called
through ctypes.  A library that cannot be loaded (a machine without nginx) is skipped.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable

__all__ = ["pcre_available", "pcre_error"]

_CASELESS_PCRE2 = 0x00000008
_CASELESS_PCRE = 0x00000001

#: Compiles a pattern; returns why it does not compile, or None.
_Checker = Callable[[bytes], str | None]


def pcre_error(pattern: str) -> str | None:
    """Why PCRE2 (nginx) or PCRE (``ngx.re``) refuses ``pattern`` (case-insensitive, as both
    modes compile it), or None when both compile it."""
    data = pattern.encode()
    for check in _checkers():
        reason = check(data)
        if reason is not None:
            return reason
    return None


def pcre_available() -> bool:
    """Whether both libraries could be loaded."""
    return len(_checkers()) == 2


@functools.cache
def _checkers() -> tuple[_Checker, ...]:
    found: list[_Checker] = []
    for load in (_pcre2, _pcre1):
        try:
            found.append(load())
        except (OSError, AttributeError):
            continue
    return tuple(found)


def _pcre2() -> _Checker:
    lib = ctypes.CDLL("libpcre2-8.so.0")
    compile_ = lib.pcre2_compile_8
    compile_.restype = ctypes.c_void_p
    compile_.argtypes = [
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_uint32,
        ctypes.POINTER(ctypes.c_int),
        ctypes.POINTER(ctypes.c_size_t),
        ctypes.c_void_p,
    ]
    message = lib.pcre2_get_error_message_8
    message.restype = ctypes.c_int
    message.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
    free = lib.pcre2_code_free_8
    free.restype = None
    free.argtypes = [ctypes.c_void_p]

    def check(data: bytes) -> str | None:
        code, offset = ctypes.c_int(), ctypes.c_size_t()
        compiled = compile_(
            data, len(data), _CASELESS_PCRE2, ctypes.byref(code), ctypes.byref(offset), None
        )
        if compiled:
            free(compiled)
            return None
        buffer = ctypes.create_string_buffer(256)
        message(code.value, buffer, len(buffer))
        return f"PCRE2: {buffer.value.decode(errors='replace')} at offset {offset.value}"

    return check


def _pcre1() -> _Checker:
    lib = ctypes.CDLL("libpcre.so.3")
    compile_ = lib.pcre_compile
    compile_.restype = ctypes.c_void_p
    compile_.argtypes = [
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.POINTER(ctypes.c_char_p),
        ctypes.POINTER(ctypes.c_int),
        ctypes.c_void_p,
    ]
    # pcre_free is a pointer to free() unless a program sets its own; ours never does.
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    free = libc.free
    free.restype = None
    free.argtypes = [ctypes.c_void_p]

    def check(data: bytes) -> str | None:
        if b"\x00" in data:
            return "PCRE: a NUL byte ends the pattern"
        error, offset = ctypes.c_char_p(), ctypes.c_int()
        compiled = compile_(data, _CASELESS_PCRE, ctypes.byref(error), ctypes.byref(offset), None)
        if compiled:
            free(compiled)
            return None
        reason = (error.value or b"does not compile").decode(errors="replace")
        return f"PCRE (ngx.re): {reason} at offset {offset.value}"

    return check
