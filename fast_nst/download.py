"""Entry point of ``python -m fast_nst.download``: the command is :mod:`fast_nst.commands.download`."""

__all__: list[str] = []  # an entry point only: the command is in fast_nst.commands

if __name__ == "__main__":
    import sys

    from fast_nst.commands.download import main

    sys.exit(main())
