#!/usr/bin/env bash
# The long reliability runs (issue 7): fault injection with >= 10,000
# messages per QoS, the broker faults, and the load test with 200 clients.
# Prints the counts and figures each test reports. Needs mosquitto
# (`apt-get install mosquitto`); everything stays on 127.0.0.1.
#
#   scripts/reliability.sh                  # 10,000 messages per QoS, 200 clients
#   MQTTS_FAULT_MESSAGES=50000 scripts/reliability.sh
#   MQTTS_FAULT_SEED=1234 scripts/reliability.sh   # repeat the cut plans of a run
#   RELIABILITY_RUNS=5 scripts/reliability.sh      # the fault run 5 times, new seeds
#
# Runs under `nice -n 19`; uses the test profile and --all-features, so the
# build is shared with `cargo test --all-features`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export MQTTS_FAULT_MESSAGES="${MQTTS_FAULT_MESSAGES:-10000}"
export MQTTS_LOAD_CLIENTS="${MQTTS_LOAD_CLIENTS:-200}"
export MQTTS_LOAD_MESSAGES="${MQTTS_LOAD_MESSAGES:-100}"
export RUST_BACKTRACE="${RUST_BACKTRACE:-0}"
runs="${RELIABILITY_RUNS:-1}"

test_run() {
    local name="$1"
    shift
    echo
    echo "== $name: cargo test --all-features --test $name -- --nocapture --test-threads 1 $*"
    nice -n 19 cargo test --quiet --all-features --test "$name" -- --nocapture --test-threads 1 "$@"
}

nice -n 19 cargo test --quiet --all-features --no-run \
    --test fault_injection --test broker_faults --test load

status=0
for ((run = 1; run <= runs; run++)); do
    echo
    echo "== fault injection run $run of $runs: $MQTTS_FAULT_MESSAGES messages per QoS"
    test_run fault_injection random_cuts || status=1
done
# The known library bug (see docs/RELIABILITY.md) and the broker faults.
test_run fault_injection a_cut_before_the_first_suback || status=1
test_run broker_faults || status=1
test_run load || status=1
exit "$status"
