#!/usr/bin/env bash
# The GPU checks of issue 4 (BOON) in one call of the device tool: the forward-time ratios on the GPU and
# paper-profile BOON cases trained there. Run in the repository root of the device machine:
#
#   bash infra/gpu/check.sh [BUDGET_SECONDS]        (default 480: one call of at most 10 minutes, with
#                                                    time left for the machine's start and the transfers)
#
# Environment: CASES (default "burgers_dirichlet stokes2", in that order), PROFILE (paper), DEVICE (cuda),
# OUT (results folder; the device tool sets it), PYTHON (python3), WHEELS (.whl), SPEED (no: skip the speed
# benchmark, e.g. in a second call for the cases alone), CASE_MIN_SECONDS (60: a case starts only with this
# much of the budget left). The wheels in .whl/
# (infra/gpu/fetch_wheels.sh, carried with the call) are installed first: the machine has no pydantic, pandera or ruamel.yaml. physml runs from the checkout,
# uninstalled, and MLflow is not used (--no-track). Data come from data/<profile>/<case> when it is carried
# and complete, else the case is generated there. Results in $OUT, at most 8 files as the tool returns them:
# boon_speed.txt, cuda_tests.txt, one <case>.json per case (rel_l2 and boundary error per constraint, FNO ÷ BOON, stage
# seconds) and check.log. Every step runs under what is left of the budget (never unbounded: `timeout 0`
# would mean no limit, so a step with under a second left is not started and counts as stopped by the
# budget); a case that cannot start with CASE_MIN_SECONDS left is skipped and says so. Dry run here, on the CPU:
#   DEVICE=cpu PROFILE=quick CASES=burgers_dirichlet WHEELS=none PYTHON=.venv/bin/python \
#     PYTHONPATH=infra/gpu/without_services bash infra/gpu/check.sh   (mlflow, prefect, dvc unimportable as there)
set -uo pipefail
cd "$(dirname "$0")/../.."
budget=${1:-480}
out=${OUT:-/tmp/physml-gpu-check}
cases=${CASES:-burgers_dirichlet stokes2}
profile=${PROFILE:-paper}
device=${DEVICE:-cuda}
case_min=${CASE_MIN_SECONDS:-60}
[[ "$budget" =~ ^[0-9]+$ && "$case_min" =~ ^[1-9][0-9]*$ ]] \
  || { echo "budget must be an integer >= 0 and CASE_MIN_SECONDS one >= 1, got '$budget' and '$case_min'" >&2; exit 2; }
mkdir -p "$out"
log="$out/check.log"
left() { echo $((budget - SECONDS)); }
# limited SECONDS COMMAND...: COMMAND under `timeout SECONDS`, or exit 124 (as timeout's) without starting it
# when under a second is left, since `timeout 0` means no limit and a negative one is an error
limited() { local seconds=$1; shift; [ "$seconds" -ge 1 ] || return 124; timeout "$seconds" "$@"; }

wheels=${WHEELS:-.whl}
if [ -d "$wheels" ] && ls "$wheels"/*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$wheels"/*.whl \
    || { echo "installing $wheels/ failed" | tee -a "$log"; exit 1; }
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MLFLOW_DISABLE_TELEMETRY=true
python=${PYTHON:-python3}

{
  echo "== $(date -u +%FT%TZ) budget ${budget}s, device $device, profile $profile, cases: $cases"
  "$python" -c 'import torch; print("torch", torch.__version__, "|",
        torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU")'
} 2>&1 | tee -a "$log"

if [ "${SPEED:-yes}" != no ]; then
  # the tests that need CUDA (skipped on a CPU): BOON where cuFFT reads the zero frequency's imaginary part
  limited 90 "$python" -m pytest -q -p no:cacheprovider tests/test_boon.py -k cuda 2>&1 | tail -n 20 | tee "$out/cuda_tests.txt"
  speed_limit=$(( $(left) / 4 ))
  limited "$speed_limit" "$python" benchmarks/boon_speed.py --device "$device" --repeats 40 2>&1 | tee "$out/boon_speed.txt"
  rc=${PIPESTATUS[0]}
  [ "$rc" = 0 ] || echo "boon_speed.py stopped (exit $rc, 124 = the limit of ${speed_limit}s)" | tee -a "$log"
fi

for case in $cases; do
  if [ "$(left)" -lt "$case_min" ]; then
    echo "== $case skipped: $(left)s of the budget left" | tee -a "$log"
    continue
  fi
  echo "== $case ($profile), $(left)s left" | tee -a "$log"
  seconds=()
  status=done
  case_start=$(date +%s)
  for stage in generate train constrain evaluate; do
    case $stage in
      generate) args=(--no-progress) ;;
      train) args=(--model fno --no-progress) ;;
      constrain) args=(--model fno) ;;
      evaluate) args=(--model fno --no-track) ;;
    esac
    begun=$SECONDS
    rc=0
    limited "$(left)" "$python" -m physml.cli "$stage" --case "$case" --profile "$profile" "${args[@]}" >> "$log" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
      if [ "$rc" -eq 124 ]; then status="stopped in $stage (budget)"; else status="stopped in $stage (exit $rc)"; fi
      echo "   $stage stopped after $((SECONDS - begun))s" | tee -a "$log"
      break
    fi
    seconds+=("$stage=$((SECONDS - begun))")
    echo "   $stage $((SECONDS - begun))s" | tee -a "$log"
  done
  "$python" - "$case" "$profile" "$status" "$case_start" "$out/$case.json" "${seconds[@]}" <<'PY' 2>&1 | tee -a "$log"
import json, sys
from pathlib import Path

case, profile, status, start, target, *stage_seconds = sys.argv[1:]
folder = Path("metrics") / profile / case / "fno"
metrics = {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))
           if p.stem != "seeds" and p.stat().st_mtime >= float(start)}  # this run's, not carried ones
result = {"case": case, "profile": profile, "status": status,
          "seconds": {k: int(v) for k, v in (s.split("=") for s in stage_seconds)},
          "metrics": {c: {k: m[k] for k in ("rel_l2", "boundary_max_abs") if k in m} for c, m in metrics.items()}}
if "none" in metrics and "boon" in metrics:
    result["fno_over_boon_rel_l2"] = metrics["none"]["rel_l2"] / metrics["boon"]["rel_l2"]
Path(target).write_text(json.dumps(result, indent=2) + "\n")
print(json.dumps(result))
PY
done
echo "== finished with $(left)s of the budget left" | tee -a "$log"
