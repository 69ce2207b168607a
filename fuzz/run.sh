#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) each, one after the
# other, starting from the seeds in fuzz/seeds/TARGET and the corpus kept
# in fuzz/corpus/TARGET (not in git). Prints one line per target:
# executions, and whether it crashed (the input is then in
# fuzz/artifacts/TARGET/). Needs cargo-fuzz; on a stable toolchain it
# sets RUSTC_BOOTSTRAP=1 for the sanitizer flags.
#
#   fuzz/run.sh 60            # every target, a minute each
#   fuzz/run.sh 300 http_path # one target
set -uo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
  mapfile -t targets < <(cargo fuzz list)
fi
rustc --version | grep -q nightly || export RUSTC_BOOTSTRAP=1

status=0
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "seeds/$target"
  log=$(mktemp)
  cargo fuzz run "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1
  code=$?
  runs=$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
  if ((code == 0)); then
    echo "$target: ${runs:-?} runs in ${seconds}s, no crash"
  elif grep -q 'Test unit written' "$log"; then
    status=1
    echo "$target: CRASHED after ${runs:-?} runs:"
    grep -E 'panicked|ERROR|Test unit written' "$log" | head -5 | sed 's/^/  /'
  else
    status=1
    echo "$target: did not run (exit $code):"
    tail -3 "$log" | sed 's/^/  /'
  fi
  rm -f "$log"
done
exit $status
