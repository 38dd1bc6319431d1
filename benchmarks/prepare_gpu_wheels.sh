#!/usr/bin/env bash
# Prepare, on a machine with PyPI, the wheel folder that benchmarks/gpu_check.sh installs from on
# a GPU machine without network.
#
#   benchmarks/prepare_gpu_wheels.sh [DIR]        (default: .whl/gpu in the repository root)
#
# The GPU image is assumed to hold torch, torchvision, Lightning, timm, torchmetrics,
# tensorboard, scikit-learn, PyYAML, packaging and pytest (the CUDA images this project targets
# do); what it lacks is pure Python, brought along here as py3-none-any wheels:
#   lightly, pytorch-metric-learning, omegaconf, hydra-core (lightly needs it) and
#   antlr4-python3-runtime (omegaconf and hydra need it; PyPI has only its source, built here).
# Versions are the ones installed next to this script's Python (the versions the tests passed
# with), or the newest when it has none. Each package appears once: two versions of one
# package in the folder would make the offline install refuse to choose.
#
# DIR is git-ignored (/.whl/), so wheels never end up in a commit; a copy of the working tree
# that leaves ignored files behind must be told to take DIR along.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-.whl/gpu}"
python="${PYTHON:-python3}"
mkdir -p "$dir"

# distribution name -> the version installed here, else empty (newest).
pin() {
  "$python" - "$1" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version

try:
    print(f"{sys.argv[1]}=={version(sys.argv[1])}")
except PackageNotFoundError:
    print(sys.argv[1])
PY
}

wheels=(lightly pytorch-metric-learning omegaconf hydra-core)
specs=()
for name in "${wheels[@]}"; do specs+=("$(pin "$name")"); done
antlr="$(pin antlr4-python3-runtime)"
echo "+ pip download ${specs[*]}"
"$python" -m pip download --quiet --no-deps --only-binary=:all: --dest "$dir" "${specs[@]}"
echo "+ pip wheel $antlr"
"$python" -m pip wheel --quiet --no-deps --wheel-dir "$dir" "$antlr"

# Keep the newest file per distribution (an older run may have left another version).
"$python" - "$dir" <<'PY'
import re
import sys
from pathlib import Path

folder = Path(sys.argv[1])
by_name: dict[str, list[Path]] = {}
for wheel in folder.glob("*.whl"):
    name = re.sub(r"[-_.]+", "_", wheel.name.split("-")[0]).lower()
    by_name.setdefault(name, []).append(wheel)
bad = [w.name for ws in by_name.values() for w in ws if not w.name.endswith("-none-any.whl")]
if bad:
    sys.exit(f"prepare_gpu_wheels.sh: not pure-Python wheels: {bad}")
for name, found in by_name.items():
    found.sort(key=lambda w: w.stat().st_mtime)
    for old in found[:-1]:
        print(f"removed older {old.name}")
        old.unlink()
PY
ls -l "$dir"
echo "wheel folder $dir: $(du -sh "$dir" | cut -f1) in $(ls "$dir"/*.whl | wc -l) wheels"
