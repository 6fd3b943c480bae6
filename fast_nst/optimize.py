"""Entry point of ``python -m fast_nst.optimize``: the command is :mod:`fast_nst.commands.optimize`."""

if __name__ == "__main__":
    import sys

    from fast_nst.commands.optimize import main

    sys.exit(main())
