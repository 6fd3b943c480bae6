"""Entry point of ``python -m fast_nst.convert``: the command is :mod:`fast_nst.commands.convert`."""

if __name__ == "__main__":
    import sys

    from fast_nst.commands.convert import main

    sys.exit(main())
