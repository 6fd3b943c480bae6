"""Entry point of ``python -m fast_nst.download``: the command is :mod:`fast_nst.commands.download`."""

if __name__ == "__main__":
    import sys

    from fast_nst.commands.download import main

    sys.exit(main())
