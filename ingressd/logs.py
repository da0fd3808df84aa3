"""Logging: structlog, JSON lines when not on a terminal, readable when on one.

    any module --structlog.get_logger(name).info(event, **fields)--> stderr

``configure()`` is called once by the command line; library code only asks for loggers.
"""

from __future__ import annotations

import logging
import sys

import structlog

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure(*, level: str = "info", json: bool | None = None) -> None:
    """Set up structlog for the process; ``json=None`` picks JSON unless stderr is a terminal."""
    if json is None:
        json = not sys.stderr.isatty()
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def debug_enabled() -> bool:
    """True when debug lines would be written (to skip building expensive debug fields)."""
    level = structlog.get_logger().get_effective_level()
    return int(level) <= logging.DEBUG
