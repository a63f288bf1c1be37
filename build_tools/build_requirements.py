#!/usr/bin/env python3
"""Print pyproject.toml's [build-system] requires, one per line (for the developer loop:
`pip install $(python build_tools/build_requirements.py)`)."""
import os
import sys

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(root, "pyproject.toml"), "rb") as f:
    sys.stdout.write("\n".join(tomllib.load(f)["build-system"]["requires"]) + "\n")
