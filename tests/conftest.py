import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
# Tests are CPU-only and must not grab every core of the 2-core CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "2")
