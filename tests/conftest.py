import os

# Tests are CPU-only and must not grab every core of the 2-core CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "2")
