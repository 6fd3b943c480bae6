"""Entry point of ``python -m fast_nst.data``: the command is :mod:`fast_nst.commands.data`."""

if __name__ == "__main__":
    import sys

    from fast_nst.commands.data import main

    sys.exit(main())
