"""Where the project's own files live (the package is installed editable from the repo)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKER_DIR = REPO_ROOT / "packer"
VARS_DIR = REPO_ROOT / "vars"
SIMULATOR_SRC = REPO_ROOT / "simulator"
CACHE_DIR = Path(os.environ.get("OVAPIPE_CACHE", REPO_ROOT / ".cache"))
OUTPUT_DIR = REPO_ROOT / "output"
