#!/usr/bin/env bash
# Runtime figures of docs/PERFORMANCE.md (issue 6, items 2, 3 and 6):
# instruction counts with callgrind (deterministic), then the timed benches.
#
#   scripts/perf-runtime.sh            # everything (about 10 minutes on 2 cores)
#   scripts/perf-runtime.sh callgrind  # instruction counts only
#   scripts/perf-runtime.sh timed      # timing tables, RAM report and throughput
#
# Instruction counts: both benches poll the client's work through a function
# named `measured` (`measured_call` for single calls); callgrind starts with
# collection off and `--toggle-collect='*measured*'` counts only what runs
# inside it, i.e. the client alone: the in-memory rustls server and the tokio
# runtime run between the client's polls, mosquitto is another process.
# Needs valgrind, jq and mosquitto (Debian packages of the same names).
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/perf-runtime
mkdir -p "$out"
what=${1:-all}

bench_exe() {
    nice -n 19 cargo bench --bench "$1" --no-run --message-format=json 2>/dev/null |
        jq -r "select(.reason == \"compiler-artifact\" and .target.name == \"$1\" and .executable != null) | .executable" |
        tail -n 1
}

# callgrind NAME DIVISOR EXE ARGS...: instructions inside `measured*` / DIVISOR.
callgrind() {
    local name=$1 divisor=$2
    shift 2
    nice -n 19 valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*measured*' \
        --callgrind-out-file="$out/$name.callgrind" "$@" >"$out/$name.stdout" 2>"$out/$name.log"
    local total
    total=$(awk '/^(summary|totals):/ { print $2; exit }' "$out/$name.callgrind")
    printf '| %s | %s | %s |\n' "$name" "$total" "$((total / divisor))"
}

if [ "$what" = all ] || [ "$what" = callgrind ]; then
    handshake=$(bench_exe handshake)
    throughput=$(bench_exe throughput)
    iterations=3
    echo "## Instructions per connection (client only, $iterations connections each)"
    echo "| mode | total Ir | Ir per connection |"
    echo "|---|---|---|"
    for mode in floor pin-sha256 pin-spki ca-p256 p256-verify sha256-leaf; do
        callgrind "handshake-$mode" "$iterations" "$handshake" --mode "$mode" --iterations "$iterations"
    done
    messages=2000
    echo
    echo "## Instructions per message (client only, $messages messages, 64-byte payload)"
    echo "| client | total Ir | Ir per message |"
    echo "|---|---|---|"
    for client in mqtts-qos0 mqtts-qos0-queued rumqttc-qos0 mqtts-qos1-window rumqttc-qos1; do
        callgrind "throughput-$client" "$messages" "$throughput" --only "$client" --rounds 1 --messages "$messages"
    done
    echo
    echo "Profiles: callgrind_annotate --inclusive=yes $out/<name>.callgrind | head -60"
fi

if [ "$what" = all ] || [ "$what" = timed ]; then
    echo
    nice -n 19 cargo bench --bench handshake
    echo
    nice -n 19 cargo bench --bench throughput
fi
