"""``python -m ingressd.cli``: the same as the ``ingressd`` command."""

import sys

from ingressd.cli.commands import main

sys.exit(main())
