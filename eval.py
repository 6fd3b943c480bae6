#!/usr/bin/env python
"""Stylize: python eval.py --model_file models/wave/wave.pth --image_file photo.jpg  (see fast_nst.cli)."""
import sys

from fast_nst.cli import eval_main

if __name__ == "__main__":
    sys.exit(eval_main())
