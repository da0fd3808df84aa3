"""The command line: ``ingressd run | render | check | record | replay``.

argv --arguments.parser()--> Namespace --commands.main()--> the command, its exit status
"""

from ingressd.cli.commands import main

__all__ = ["main"]
