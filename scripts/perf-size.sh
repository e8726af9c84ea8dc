#!/usr/bin/env bash
# Flash and static RAM of mqtts on the real instruction sets (issue 6, item 1).
#
# Builds the size harness (perf/size: one TLS connection and one MQTT session
# over a socket stub, opt-level "s", fat LTO, one codegen unit, panic=abort)
# for every variant on riscv32imc-unknown-none-elf (ESP32-C3) and
# thumbv7em-none-eabihf with Debian's Rust toolchain, then prints .text,
# .rodata, .data and .bss (llvm-size -A), the goals of issue 6, and where the
# bytes of P beyond F (and of C beyond P) go, per crate and per symbol.
#
# Variants (perf/size/Cargo.toml):
#   F  floor    embedded-tls open/read/write, no verifier, no signer, no MQTT
#   T  tls-pin  mqtts TLS only (SHA-256 certificate pin, P-256), no MQTT
#   P  pin      mqtts, SHA-256 certificate pin, P-256 only, full MQTT session
#   C  ca       as P in CA mode (one P-256 trust anchor)
#   P+384 / P+RSA / P+Ed25519: P with the p384 / rsa (bump heap) / ed25519 feature
#
# Usage: bash scripts/perf-size.sh [--no-attribution] [--type-sizes]
# Env:   PERF_SIZE_TARGET_DIR  shared target dir (default <repo>/target/perf-size)
#        PERF_SIZE_TARGETS     targets to build (default: both)
#        PERF_SIZE_VARIANTS    variants to build (default: all)
#        PERF_SIZE_ENFORCE=1   exit non-zero when a goal is missed
#        PERF_SIZE_FEATURES    extra harness features for every variant
#                              (e.g. sha2-compact)
#        DEB_BIN               Debian's cargo/rustc (default /usr/bin)
# 1 KB = 1000 bytes here, as in the issue. Flash = .text + .rodata + .data.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
harness="$repo_root/perf/size"

attribution=1
type_sizes=0
for arg in "$@"; do
    case "$arg" in
        --no-attribution) attribution=0 ;;
        --type-sizes) type_sizes=1 ;;
        *) echo "usage: $0 [--no-attribution] [--type-sizes]" >&2; exit 2 ;;
    esac
done

TARGET_DIR="${PERF_SIZE_TARGET_DIR:-$repo_root/target/perf-size}"
read -r -a TARGETS <<<"${PERF_SIZE_TARGETS:-riscv32imc-unknown-none-elf thumbv7em-none-eabihf}"
read -r -a VARIANTS <<<"${PERF_SIZE_VARIANTS:-floor tls-pin pin ca p384 rsa ed25519}"

die() { echo "perf-size: ERROR: $*" >&2; exit 1; }

# --- Debian toolchain, never rustup's; the linker lld-22 installs ----------
# shellcheck source=scripts/debian-toolchain.sh
source "$repo_root/scripts/debian-toolchain.sh"
unset RUSTFLAGS
require_deb_linker
for tool in llvm-size-22 llvm-nm-22 llvm-dwarfdump-22; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool missing (apt-get install llvm-22)"
done

label() {
    case "$1" in
        floor) echo "F" ;; tls-pin) echo "T" ;; pin) echo "P" ;; ca) echo "C" ;;
        p384) echo "P+384" ;; rsa) echo "P+RSA" ;; ed25519) echo "P+Ed25519" ;; *) echo "$1" ;;
    esac
}

elf_path() { echo "$TARGET_DIR/elf/$1/$2.elf"; }

# --- builds ------------------------------------------------------------------
echo "perf-size: $("$DEB_BIN/cargo" --version), $("$RUSTC" --version)"
failed=()
start_all=$SECONDS
cd "$harness"
for target in "${TARGETS[@]}"; do
    mkdir -p "$TARGET_DIR/elf/$target"
    for variant in "${VARIANTS[@]}"; do
        start=$SECONDS
        args=(build --release -Zbuild-std=core,alloc --target "$target"
              --features "$variant${PERF_SIZE_FEATURES:+,$PERF_SIZE_FEATURES}" --target-dir "$TARGET_DIR")
        if "$DEB_BIN/cargo" "${args[@]}" >"$TARGET_DIR/elf/$target/$variant.log" 2>&1; then
            cp "$TARGET_DIR/$target/release/mqtts-size" "$(elf_path "$target" "$variant")"
            echo "perf-size: built $(label "$variant") for $target ($((SECONDS - start)) s)"
        else
            echo "perf-size: FAILED $(label "$variant") for $target, log:" >&2
            tail -n 30 "$TARGET_DIR/elf/$target/$variant.log" >&2
            failed+=("$variant/$target")
            rm -f "$(elf_path "$target" "$variant")"
        fi
    done
done
echo "perf-size: all builds in $((SECONDS - start_all)) s"

# --- sections ----------------------------------------------------------------
section() { # elf name -> bytes (0 if absent)
    llvm-size-22 -A "$1" | awk -v s="$2" '$1 == s { print $2; found = 1 } END { if (!found) print 0 }'
}
flash() { echo $(($(section "$1" .text) + $(section "$1" .rodata) + $(section "$1" .data))); }
kb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1000 }'; }

echo
echo "## Sections (bytes; flash = .text + .rodata + .data; KB = 1000 bytes)"
echo
for target in "${TARGETS[@]}"; do
    floor_elf="$(elf_path "$target" floor)"
    echo "### $target"
    echo
    echo "| variant | .text | .rodata | .data | .bss | flash | flash KB | over F |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    for variant in "${VARIANTS[@]}"; do
        elf="$(elf_path "$target" "$variant")"
        [[ -f "$elf" ]] || { echo "| $(label "$variant") | build failed | | | | | | |"; continue; }
        over="-"
        [[ -f "$floor_elf" && "$variant" != floor ]] && over="+$(kb $(($(flash "$elf") - $(flash "$floor_elf")))) KB"
        echo "| $(label "$variant") | $(section "$elf" .text) | $(section "$elf" .rodata) | $(section "$elf" .data) | $(section "$elf" .bss) | $(flash "$elf") | $(kb "$(flash "$elf")") | $over |"
    done
    echo
done
echo "(.bss: the harness keeps every buffer on the stack; P+RSA's .bss is its 16 KB bump heap.)"

# --- goals of issue 6 ------------------------------------------------------------
echo
echo "## Goals (issue 6)"
echo
missed=0
goal() { # description actual_bytes limit_bytes
    local verdict="met"
    if (($2 > $3)); then verdict="MISSED by $(kb $(($2 - $3))) KB"; missed=$((missed + 1)); fi
    echo "- $1: $(kb "$2") KB, goal <= $(kb "$3") KB: $verdict"
}
for target in "${TARGETS[@]}"; do
    f="$(elf_path "$target" floor)"; p="$(elf_path "$target" pin)"
    [[ -f "$f" && -f "$p" ]] || continue
    case "$target" in riscv32*) budget=28000 ;; *) budget=22000 ;; esac
    goal "$target: P - F" $(($(flash "$p") - $(flash "$f"))) "$budget"
    for variant in ca p384 rsa ed25519; do
        v="$(elf_path "$target" "$variant")"
        [[ -f "$v" ]] && goal "$target: $(label "$variant") - P" $(($(flash "$v") - $(flash "$p"))) 26000
    done
done

# --- attribution -----------------------------------------------------------------
if ((attribution)); then
    for target in "${TARGETS[@]}"; do
        for pair in "floor pin" "pin ca"; do
            read -r base variant <<<"$pair"
            b="$(elf_path "$target" "$base")"; v="$(elf_path "$target" "$variant")"
            [[ -f "$b" && -f "$v" ]] || continue
            echo
            echo "## $target: where $(label "$variant")'s bytes beyond $(label "$base") go"
            echo
            echo "Code by source = instruction bytes charged to the crate of the source line"
            echo "(DWARF line table, inlining resolved); by symbol name = llvm-nm sizes grouped"
            echo "by the first crate path of the demangled name."
            echo
            python3 "$harness/attribute.py" -n 25 --diff "$b" "$v"
        done
    done
fi

# --- type sizes --------------------------------------------------------------------
if ((type_sizes)); then
    echo
    echo "## size_of on riscv32imc (P, -Zprint-type-sizes)"
    echo
    "$DEB_BIN/cargo" rustc --release -Zbuild-std=core,alloc --target riscv32imc-unknown-none-elf \
        --features pin --target-dir "$TARGET_DIR" --bin mqtts-size -- -Zprint-type-sizes 2>/dev/null \
        | sed -nE 's/^print-type-size type: `(.*)`: ([0-9]+) bytes, .*/\2\t\1/p' \
        | grep -E $'\t(mqtts::Error|mqtts::Session<|mqtts::client::Client<|mqtts::tls::TlsStream<|mqtts::tls::TlsOptions|mqtts::tls::verifier::TrustVerifier|mqtts::trust::PresentedCertificate|mqtts::trust::Trust<|embedded_tls::asynch::TlsConnection<|embedded_tls::key_schedule::KeySchedule<|\\{async fn body of mqtts::(client::Client<.*>::(connect_tls|poll|publish|subscribe|disconnect)|tls::TlsStream<.*>::close)|\\{async block@src/main.rs)' \
        | sort -u | sort -t$'\t' -k1,1 -n -r \
        | awk -F'\t' '{ printf "| %s | %s |\n", $2, $1 }' \
        | sed '1i | type | bytes |\n|---|---:|'
fi

if ((${#failed[@]})); then
    die "${#failed[@]} build(s) failed: ${failed[*]}"
fi
if ((missed)) && [[ "${PERF_SIZE_ENFORCE:-0}" == 1 ]]; then
    die "$missed goal(s) missed"
fi
