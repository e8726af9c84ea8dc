#!/usr/bin/env bash
# Fuzzing mqtts with cargo-fuzz (targets in fuzz/fuzz_targets/).
#
#   scripts/fuzz.sh smoke [SECONDS]          each target SECONDS (default 60) on
#                                            the committed corpus and the inputs
#                                            of past findings (fuzz/regressions/);
#                                            fails on a crash
#   scripts/fuzz.sh campaign [SECONDS] [RUNS]
#                                            each target, one after another, until
#                                            RUNS executions (default 10000000) or
#                                            SECONDS (default 1800); seeds and the
#                                            committed corpus in, minimized corpus
#                                            back to fuzz/corpus/ (cargo fuzz cmin);
#                                            FUZZ_SECONDS_<target>=N overrides SECONDS
#   scripts/fuzz.sh seeds                    regenerates the seed corpora from real
#                                            data (fuzz/examples/seeds.rs) into
#                                            fuzz/work/seeds/
#   scripts/fuzz.sh coverage TARGET          llvm-cov report of the committed corpus
#
# FUZZ_TARGETS="tls verifier" limits smoke and campaign to those targets.
# FUZZ_SANITIZER=none builds without AddressSanitizer (into
# fuzz/target-nosan/; debug assertions stay on): 5 to 6 times the
# executions per second on the handshake targets. mqtts denies unsafe code,
# so a panic, hang or failed check is what the fuzzer looks for; a
# campaign without ASan then replays its minimized corpus under ASan.
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`) and a compiler
# that takes -Z flags: the `nightly` rustup toolchain if installed,
# otherwise the default toolchain with RUSTC_BOOTSTRAP=1. FUZZ_TOOLCHAIN=NAME
# picks a rustup toolchain (e.g. `stable`, as CI does: no nightly there).
# Long runs are niced; the summary of a campaign (executions, exec/s,
# coverage) is printed and kept in fuzz/work/summary.txt, each target's
# libFuzzer log in fuzz/work/TARGET.log.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Fast targets first (the tls target runs a P-256 handshake per input).
TARGETS=(fingerprint frame record_gate session trust certificate_verify verifier tls)
if [[ -n "${FUZZ_TARGETS:-}" ]]; then
    read -r -a TARGETS <<<"$FUZZ_TARGETS"
fi
# -a: debug assertions (and overflow checks) on; address sanitizer (default).
ASAN_FLAGS=(-a)
case "${FUZZ_SANITIZER:-address}" in
address) BUILD_FLAGS=("${ASAN_FLAGS[@]}") ;;
none) BUILD_FLAGS=(-a -s none --target-dir "$PWD/fuzz/target-nosan") ;;
*)
    echo "fuzz.sh: FUZZ_SANITIZER is address or none" >&2
    exit 2
    ;;
esac
# A single input running 10 s is a hang; 2 GiB is far above what any target needs.
LIBFUZZER_FLAGS=(-timeout=10 -rss_limit_mb=2048 -print_final_stats=1)

if [[ -n "${FUZZ_TOOLCHAIN:-}" ]]; then
    TOOLCHAIN=("+$FUZZ_TOOLCHAIN")
elif rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    TOOLCHAIN=(+nightly)
else
    TOOLCHAIN=()
fi
# A stable compiler accepts cargo-fuzz's -Z flags (sanitizer, coverage
# options) with RUSTC_BOOTSTRAP=1; a nightly one needs nothing.
if [[ "${TOOLCHAIN[*]:-}" != +nightly* ]]; then
    export RUSTC_BOOTSTRAP=1
fi
command -v cargo-fuzz >/dev/null || {
    echo "fuzz.sh: cargo-fuzz not found: cargo install cargo-fuzz --locked" >&2
    exit 1
}

fuzz() { cargo "${TOOLCHAIN[@]}" fuzz "$@"; }

# The figures of a libFuzzer log: executions, exec/s, and the last cov/ft line.
summarize() {
    local target=$1 log=$2
    local runs rate last
    runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log" | tail -n1)
    rate=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+).*/\1/p' "$log" | tail -n1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -n1)
    local cov ft corp
    cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
    ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
    corp=$(sed -nE 's/.* corp: ([0-9]+\/[0-9]+[a-zA-Z]*).*/\1/p' <<<"$last")
    printf '%-12s executions %-11s exec/s %-7s cov %-6s ft %-7s corpus %s\n' \
        "$target" "${runs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}"
}

cmd=${1:-smoke}
case "$cmd" in
smoke)
    seconds=${2:-60}
    fuzz build -O "${BUILD_FLAGS[@]}"
    for target in "${TARGETS[@]}"; do
        # New inputs go to a scratch directory: the committed corpus is only read.
        scratch=$(mktemp -d)
        log="$scratch.log"
        # Inputs kept from findings (fuzz/regressions/) run first with the corpus.
        corpora=("fuzz/corpus/$target")
        [[ -d fuzz/regressions/$target ]] && corpora+=("fuzz/regressions/$target")
        echo "== fuzz smoke: $target for ${seconds}s on ${corpora[*]}"
        if ! fuzz run -O "${BUILD_FLAGS[@]}" "$target" "$scratch" "${corpora[@]}" -- \
            "${LIBFUZZER_FLAGS[@]}" -max_total_time="$seconds" >"$log" 2>&1; then
            tail -n 60 "$log" >&2
            echo "fuzz.sh: $target crashed; the input is in fuzz/artifacts/$target/" >&2
            exit 1
        fi
        summarize "$target" "$log"
        rm -rf "$scratch" "$log"
    done
    ;;
seeds)
    rm -rf fuzz/work/seeds
    # --cfg fuzzing as cargo-fuzz builds: mqtts's fuzzing hooks and insecure
    # mode, which the fuzz crate's checks use.
    (cd fuzz && RUSTFLAGS="--cfg fuzzing" cargo run --release --example seeds -- work/seeds)
    ;;
campaign)
    seconds=${2:-1800}
    runs=${3:-10000000}
    mkdir -p fuzz/work
    [[ -d fuzz/work/seeds ]] || "$0" seeds
    fuzz build -O "${BUILD_FLAGS[@]}"
    : >fuzz/work/summary.txt
    for target in "${TARGETS[@]}"; do
        work=fuzz/work/corpus/$target
        mkdir -p "$work" "fuzz/corpus/$target"
        cp -n fuzz/work/seeds/"$target"/* fuzz/corpus/"$target"/* "$work"/ 2>/dev/null || true
        log=fuzz/work/$target.log
        limit_var=FUZZ_SECONDS_$target
        limit=${!limit_var:-$seconds}
        echo "== [$(date -u +%H:%M:%S)] fuzz campaign: $target (${runs} runs or ${limit}s)"
        set +e
        nice -n 19 cargo "${TOOLCHAIN[@]}" fuzz run -O "${BUILD_FLAGS[@]}" "$target" "$work" -- \
            "${LIBFUZZER_FLAGS[@]}" -max_total_time="$limit" -runs="$runs" >"$log" 2>&1
        status=$?
        set -e
        summarize "$target" "$log" | tee -a fuzz/work/summary.txt
        if ((status != 0)); then
            echo "   $target stopped with status $status: see $log and fuzz/artifacts/$target/" |
                tee -a fuzz/work/summary.txt
        fi
        # Minimize into the committed corpus: the fewest inputs that reach
        # every edge reached (hit counts ignored, which keeps a few hundred
        # files rather than thousands).
        nice -n 19 cargo "${TOOLCHAIN[@]}" fuzz cmin -O "${BUILD_FLAGS[@]}" "$target" "$work" \
            -- -use_counters=0 >"fuzz/work/$target.cmin.log" 2>&1
        rm -rf "fuzz/corpus/$target"
        cp -r "$work" "fuzz/corpus/$target"
        echo "   minimized corpus: $(ls "fuzz/corpus/$target" | wc -l) files" | tee -a fuzz/work/summary.txt
        if [[ "${FUZZ_SANITIZER:-address}" == none ]]; then
            # What the campaign kept, once more with AddressSanitizer.
            if cargo "${TOOLCHAIN[@]}" fuzz run -O "${ASAN_FLAGS[@]}" "$target" "fuzz/corpus/$target" -- \
                -runs=0 >"fuzz/work/$target.asan.log" 2>&1; then
                echo "   corpus replayed under AddressSanitizer: no error" | tee -a fuzz/work/summary.txt
            else
                echo "   corpus replay under AddressSanitizer FAILED: see fuzz/work/$target.asan.log" |
                    tee -a fuzz/work/summary.txt
            fi
        fi
    done
    cat fuzz/work/summary.txt
    ;;
coverage)
    target=${2:?usage: fuzz.sh coverage TARGET}
    # cargo-fuzz looks for llvm-profdata in the toolchain (rustup's
    # llvm-tools); Debian's LLVM of the same major version as rustc's reads
    # the same profiles (apt package llvm-NN).
    major=$(rustc "${TOOLCHAIN[@]}" -vV | sed -nE 's/^LLVM version: ([0-9]+).*/\1/p')
    llvm=/usr/lib/llvm-$major/bin
    [[ -x $llvm/llvm-profdata ]] || {
        echo "fuzz.sh: $llvm/llvm-profdata not found (apt-get install llvm-$major)" >&2
        exit 1
    }
    mkdir -p fuzz/work
    nice -n 19 cargo "${TOOLCHAIN[@]}" fuzz coverage --llvm-path "$llvm" "$target" "fuzz/corpus/$target" \
        >"fuzz/work/$target.coverage.log" 2>&1
    # cargo-fuzz builds it under the library's target directory.
    binary=$(find target fuzz/target -path "*/coverage/*/release/$target" -type f 2>/dev/null | head -n1)
    "$llvm/llvm-cov" report "$binary" -instr-profile="fuzz/coverage/$target/coverage.profdata" \
        -ignore-filename-regex='(\.cargo/registry|/rustc/|/fuzz/)' | tee "fuzz/work/$target.coverage.txt"
    ;;
*)
    echo "usage: $0 smoke [SECONDS] | campaign [SECONDS] [RUNS] | seeds | coverage TARGET" >&2
    exit 2
    ;;
esac
