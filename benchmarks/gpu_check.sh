#!/usr/bin/env bash
# The whole GPU check in one run, within 8 minutes, on a fresh CUDA machine without network:
#
#   bash benchmarks/gpu_check.sh [--dry-run] [OUT_DIR]        ($OUT, if set, wins over OUT_DIR)
#
# 1. environment: torch, CUDA, the GPU (nvidia-smi);
# 2. packages: the machine is expected to hold torch, torchvision, Lightning, timm,
#    torchmetrics, tensorboard, scikit-learn and pytest; what it lacks of lightly,
#    pytorch-metric-learning, omegaconf, hydra-core and antlr4-python3-runtime is installed
#    offline with `pip install --no-index --find-links WHEELS`;
# 3. tests/gpu (pytest, JUnit XML);
# 4. every `benchmarks/throughput.py --device cuda` command written in BENCHMARKS.md, run as
#    written except that --out points into the output folder;
# 5. summary.md / summary.json: each part's status and time, the tests' counts, and the GPU
#    figures (images/s with CPU and GPU augmentation, their ratio against the 3x target, the
#    fraction of the measured bf16 matmul peak the step reaches, the framework overhead).
# Each part runs under `timeout` within the budget (GPU_CHECK_BUDGET_S, default 470 s); a part
# that no longer fits is skipped and says so. Output folder: parts.tsv, gpu_check.log,
# tests_gpu.xml, throughput_cuda*.json, summary.md, summary.json (7 files, one folder).
#
# The wheel folder (GPU_CHECK_WHEELS, default .whl/gpu) is made beforehand, on a machine with
# PyPI, by benchmarks/prepare_gpu_wheels.sh (five pure-Python wheels, under 1 MB). It stays
# git-ignored (/.whl/) so wheels never get committed; a copy of the working tree made for the
# GPU machine from tracked and untracked-but-not-ignored files leaves it behind, so name
# .whl/gpu explicitly among the paths copied along.
#
# --dry-run (or GPU_CHECK_DRY=1): for machines without CUDA (CI, a laptop). It reports that no
# CUDA device is there, installs nothing (it only checks, offline, that the wheel folder holds
# every wheel, when there is one), runs tests/gpu, which skips every test with the reason, skips
# the throughput commands, still writes the summary, and exits 0 unless a part failed. Without
# --dry-run, a machine without CUDA fails the check.
# PYTHON (default python3) is the interpreter that holds torch.
set -uo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
dry="${GPU_CHECK_DRY:-0}"
out_arg=""
for arg in "$@"; do
  case "$arg" in
    --dry-run) dry=1 ;;
    -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "gpu_check.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
    *) out_arg="$arg" ;;
  esac
done
out="${OUT:-$out_arg}"
if [ -z "$out" ]; then
  echo "gpu_check.sh: give an output folder (OUT=DIR or an argument; see --help)" >&2
  exit 2
fi
mkdir -p "$out" && out="$(cd "$out" && pwd)"
python="${PYTHON:-python3}"
wheels="${GPU_CHECK_WHEELS:-$repo/.whl/gpu}"
budget="${GPU_CHECK_BUDGET_S:-470}"
log="$out/gpu_check.log"
: >"$out/parts.tsv"
: >"$log"
start=$SECONDS
# The checkout itself is importable whether or not the package is installed.
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

say() { echo "$*" | tee -a "$log"; }
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >>"$out/parts.tsv"; }
left() { echo $((budget - (SECONDS - start))); }

# part NAME CAP_S MIN_S COMMAND...: run time-boxed to min(CAP_S, budget left - 15 s for the
# summary); skipped when less than MIN_S would be left. Sets $rc (124: timed out).
part() {
  local name="$1" cap="$2" min="$3"
  shift 3
  local avail=$(($(left) - 15))
  local limit=$((cap < avail ? cap : avail))
  if [ "$limit" -lt "$min" ]; then
    say "== $name: SKIPPED (only ${avail}s of the ${budget}s budget left, needs ${min}s)"
    record "$name" skipped - 0 "no time left (${avail}s)"
    rc=skipped
    return
  fi
  say "== $name (at most ${limit}s): $*"
  local t0=$SECONDS
  timeout --signal=INT --kill-after=20 "$limit" "$@" 2>&1 | tee -a "$log"
  rc=${PIPESTATUS[0]}
  local took=$((SECONDS - t0))
  local status=passed note="$part_note"
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    status=failed note="timed out after ${limit}s"
  elif [ "$rc" != 0 ]; then
    status=failed
  fi
  say "== $name: $status (exit $rc, ${took}s)"
  record "$name" "$status" "$rc" "$took" "$note"
}
part_note=""

# ---- 1. environment ------------------------------------------------------------------------
read -r -d '' env_py <<'PY'
import platform

import torch

print(f"python {platform.python_version()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"CUDA device: {p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs")
else:
    print("CUDA device: none (torch.cuda.is_available() is False)")
PY
say "== environment"
t0=$SECONDS
env_out="$(timeout 60 "$python" -c "$env_py" 2>&1)"
rc=$?
say "$env_out"
command -v nvidia-smi >/dev/null && timeout 20 nvidia-smi -L 2>&1 | tee -a "$log"
device="$(echo "$env_out" | grep '^CUDA device:' | tail -1)"
[ "$rc" = 0 ] && status=passed || status=failed
record environment "$status" "$rc" $((SECONDS - t0)) "${device:-torch did not load}"
cuda=0
if [[ "$device" == "CUDA device: none"* ]] || [ -z "$device" ]; then
  if [ "$dry" != 1 ]; then
    record cuda failed 1 0 "torch sees no CUDA device (use --dry-run on a machine without one)"
  else
    record cuda skipped - 0 "no CUDA device (dry run): GPU parts skipped"
  fi
  say "no CUDA device: GPU parts are skipped"
else
  cuda=1
fi

# ---- 2. packages ---------------------------------------------------------------------------
missing_of() {
  # import name=distribution pairs -> the distributions whose import fails
  "$python" - "$@" <<'PY'
import importlib.util
import sys

print(" ".join(d for pair in sys.argv[1:] for m, d in [pair.split("=")] if not importlib.util.find_spec(m)))
PY
}
base_missing="$(missing_of torch=torch torchvision=torchvision pytorch_lightning=pytorch-lightning \
  timm=timm torchmetrics=torchmetrics tensorboard=tensorboard sklearn=scikit-learn pytest=pytest)"
carried=(lightly=lightly pytorch_metric_learning=pytorch-metric-learning omegaconf=omegaconf
  hydra=hydra-core antlr4=antlr4-python3-runtime)
wheel_missing="$(missing_of "${carried[@]}")"
install_wheels() {
  if [ -n "$base_missing" ]; then
    echo "missing and not carried as wheels: $base_missing"
    return 1
  fi
  local names=() pair
  for pair in "${carried[@]}"; do names+=("${pair#*=}"); done
  if [ "$dry" = 1 ]; then
    echo "would install: ${wheel_missing:-nothing (all importable)}"
    if [ ! -d "$wheels" ]; then
      echo "no wheel folder at $wheels (benchmarks/prepare_gpu_wheels.sh makes it); not checked"
      return 0
    fi
    local tmp
    tmp="$(mktemp -d)"
    # Offline: every carried distribution has exactly one wheel there.
    "$python" -m pip download --quiet --no-index --no-deps --find-links "$wheels" -d "$tmp" "${names[@]}" &&
      ls "$tmp" && rm -r "$tmp"
    return
  fi
  if [ -z "$wheel_missing" ]; then
    echo "nothing to install"
    return 0
  fi
  if [ ! -d "$wheels" ]; then
    echo "missing: $wheel_missing, and no wheel folder at $wheels"
    return 1
  fi
  # shellcheck disable=SC2086
  "$python" -m pip install --quiet --no-index --find-links "$wheels" $wheel_missing ||
    {
      echo "site-packages not writable: installing into /tmp/gpu-check-site instead"
      "$python" -m pip install --quiet --no-index --find-links "$wheels" \
        --target /tmp/gpu-check-site $wheel_missing || return 1
      export PYTHONPATH="/tmp/gpu-check-site:$PYTHONPATH"
    }
}
part_note="missing here: ${base_missing:-none}${wheel_missing:+; from wheels: $wheel_missing}"
# Not through part(): install_wheels may extend PYTHONPATH, which a pipe's subshell would lose.
say "== packages: $part_note"
t0=$SECONDS
install_wheels >"$out/.packages.log" 2>&1
rc=$?
tee -a "$log" <"$out/.packages.log"
rm -f "$out/.packages.log"
[ "$rc" = 0 ] && status=passed || status=failed
[ "$dry" = 1 ] && [ "$rc" = 0 ] && status=skipped part_note="$part_note (dry run: nothing installed)"
record packages "$status" "$rc" $((SECONDS - t0)) "$part_note"
say "== packages: $status"
part_note=""

# ---- 3. tests/gpu --------------------------------------------------------------------------
part_note="$([ "$cuda" = 1 ] || echo "no CUDA device: every test skipped")"
part tests/gpu 240 30 "$python" -m pytest tests/gpu -p no:cacheprovider \
  --junitxml="$out/tests_gpu.xml" -o junit_family=xunit2
if [ "$cuda" != 1 ] && [ "$rc" = 0 ]; then
  sed -i '$ s/\tpassed\t/\tskipped\t/' "$out/parts.tsv"
fi
part_note=""

# ---- 4. the CUDA throughput commands of BENCHMARKS.md ---------------------------------------
mapfile -t commands < <("$python" - "$repo/BENCHMARKS.md" "$out" "$python" <<'PY'
import re
import shlex
import sys
from pathlib import Path

text, out, python = Path(sys.argv[1]).read_text(), sys.argv[2], sys.argv[3]
commands, current = [], None
for line in text.splitlines():
    code = line[4:] if line.startswith("    ") else None
    if current is not None:
        current += " " + code.strip() if code is not None else ""
    elif code is not None and re.match(r"(\w+=\S+ )*python benchmarks/throughput.py", code.strip()):
        current = code.strip()
    if current is not None and not current.endswith("\\"):
        commands.append(current)
        current = None
    elif current is not None:
        current = current[:-1].rstrip()
for command in dict.fromkeys(commands):
    args = shlex.split(command)
    env = []  # leading VAR=value settings, kept with `env`
    while re.fullmatch(r"\w+=\S*", args[0]):
        env.append(args.pop(0))
    if "--device" not in args or args[args.index("--device") + 1] != "cuda":
        continue
    i = args.index("--out")
    args[i + 1] = str(Path(out) / Path(args[i + 1]).name)
    run = ["env", *env, python, *args[1:]] if env else [python, *args[1:]]
    print(Path(args[i + 1]).stem + "\t" + shlex.join(run))
PY
)
say "BENCHMARKS.md names ${#commands[@]} CUDA throughput command(s)"
caps=(130 130)
for i in "${!commands[@]}"; do
  name="${commands[$i]%%$'\t'*}"
  eval "cmd=(${commands[$i]#*$'\t'})"
  if [ "$cuda" != 1 ]; then
    say "== $name: SKIPPED (no CUDA device): ${cmd[*]}"
    record "$name" skipped - 0 "no CUDA device"
    continue
  fi
  part "$name" "${caps[$i]:-100}" 40 "${cmd[@]}"
done

# ---- 5. summary ----------------------------------------------------------------------------
say "== summary ($((SECONDS - start))s of ${budget}s used)"
"$python" "$repo/benchmarks/_gpu_check_summary.py" "$out" | tee -a "$log"
exit "${PIPESTATUS[0]}"
