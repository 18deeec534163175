"""The ``sessioncore`` command line: a test UAS (``uas``) and a load-generating UAC (``call``).

The entry point is :func:`sessioncore.cli.main.main`; ``python -m sessioncore`` runs it too.
"""

from sessioncore.cli.main import main

__all__ = ["main"]
