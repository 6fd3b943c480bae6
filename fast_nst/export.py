"""Entry point of ``python -m fast_nst.export``: the command is :mod:`fast_nst.commands.export`."""

if __name__ == "__main__":
    import sys

    from fast_nst.commands.export import main

    sys.exit(main())
