"""``python -m sessioncore ...`` runs the ``sessioncore`` command line."""

from sessioncore.cli.main import main

if __name__ == "__main__":
    main()
