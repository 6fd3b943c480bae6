#!/usr/bin/env python
"""Stylize: python eval.py --model_file models/wave/wave.pth --image_file photo.jpg  (see fast_nst.commands.eval)."""
import sys

from fast_nst.commands.eval import main

if __name__ == "__main__":
    sys.exit(main())
