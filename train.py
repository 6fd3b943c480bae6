#!/usr/bin/env python
"""Train a style: python train.py -c conf/wave.yml  (see fast_nst.commands.train)."""
import sys

from fast_nst.commands.train import main

if __name__ == "__main__":
    sys.exit(main())
