"""Entry point of ``python -m fast_nst.stylize_dataset``: the command is :mod:`fast_nst.commands.stylize_dataset`."""

__all__: list[str] = []  # an entry point only: the command is in fast_nst.commands

if __name__ == "__main__":
    import sys

    from fast_nst.commands.stylize_dataset import main

    sys.exit(main())
