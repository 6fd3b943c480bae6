#!/usr/bin/env python
"""Train a style: python train.py -c conf/wave.yml  (see fast_nst.cli)."""
import sys

from fast_nst.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())
