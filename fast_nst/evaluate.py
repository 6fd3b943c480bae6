"""Entry point of ``python -m fast_nst.evaluate``: the command is :mod:`fast_nst.commands.evaluate`."""

if __name__ == "__main__":
    import sys

    from fast_nst.commands.evaluate import main

    sys.exit(main())
