import os

# Tests are CPU-only and must not grab every core of the 2-core CI machine: one thread per
# pytest-xdist worker (the README's command runs two), two when the suite runs in one process.
os.environ.setdefault("OMP_NUM_THREADS", "1" if "PYTEST_XDIST_WORKER" in os.environ else "2")
