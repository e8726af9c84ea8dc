#!/usr/bin/env bash
# Measures what a change to the library would save, without touching src/:
# copies the library into the size harness's target dir, applies a patch
# (from this folder), builds the harness against the copy and prints the
# flash of each variant beside the unpatched build of scripts/perf-size.sh.
#
# Usage: bash perf/size/experiments/run.sh A.patch[,B.patch...]|none [variant...]
#        (patches are applied in order: each one is written against the
#        library with the earlier ones applied)
#        (variants default to "tls-pin pin ca"; run scripts/perf-size.sh first)
# Env:   PERF_SIZE_TARGETS, PERF_SIZE_TARGET_DIR, DEB_BIN as perf-size.sh;
#        EXTRA_FEATURES  harness features added to each build (e.g. sha2-compact)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$here/../../.." && pwd)"
patch_list="${1:?usage: run.sh A.patch[,B.patch...]|none [variant...]}"
shift
variants=("$@")
((${#variants[@]})) || variants=(tls-pin pin ca)
read -r -a TARGETS <<<"${PERF_SIZE_TARGETS:-riscv32imc-unknown-none-elf thumbv7em-none-eabihf}"
TARGET_DIR="${PERF_SIZE_TARGET_DIR:-$repo_root/target/perf-size}"
DEB_BIN="${DEB_BIN:-/usr/bin}"
export RUSTC="$DEB_BIN/rustc" RUSTDOC="$DEB_BIN/rustdoc" PATH="$DEB_BIN:$PATH" RUSTC_BOOTSTRAP=1
unset RUSTUP_TOOLCHAIN RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER CARGO_BUILD_RUSTC CARGO RUSTFLAGS 2>/dev/null || true

IFS=, read -r -a patches <<<"$patch_list"
name="${patch_list//.patch/}"
name="${name//,/+}${EXTRA_FEATURES:++${EXTRA_FEATURES// /+}}"
work="$TARGET_DIR/exp/$name"
# A target dir of its own: the copied harness is a workspace root at the
# same relative path as the real one, so cargo gives both the same artifact
# names, and a shared target dir let an experiment's build stand in for
# the real harness's floor build (found in round 5: a stale F).
EXP_TARGET_DIR="$TARGET_DIR/exp-target"
rm -rf "$work/mqtts" "$work/harness"
mkdir -p "$work/mqtts/examples" "$work/mqtts/tests" "$work/harness"
cp -r "$repo_root"/{Cargo.toml,Cargo.lock,README.md,src,benches,certs} "$work/mqtts/"
cp "$repo_root"/examples/*.rs "$work/mqtts/examples/"
cp -r "$repo_root/tests/data" "$work/mqtts/tests/"
# Only the library is built: drop bench and example targets (their files
# may be work in progress elsewhere in the checkout).
awk '/^\[\[(bench|example|test)\]\]/ { skip = 1; next } /^\[/ { skip = 0 } !skip' \
    "$repo_root/Cargo.toml" >"$work/mqtts/Cargo.toml"
# Its own workspace: cargo must not read the checkout's manifest above it.
printf '\n[lib]\nbench = false\n\n[workspace]\n' >>"$work/mqtts/Cargo.toml"
sed -i 's/^\(\[package\]\)$/\1\nautobenches = false\nautoexamples = false\nautotests = false/' "$work/mqtts/Cargo.toml"
for patch_file in "${patches[@]}"; do
    [[ "$patch_file" == none ]] || patch -s -p1 -d "$work/mqtts" <"$here/$patch_file"
done
cp -r "$here/../"{Cargo.toml,Cargo.lock,build.rs,link.x,src} "$work/harness/"
sed -i 's|path = "../.."|path = "../mqtts"|' "$work/harness/Cargo.toml"
# The harness includes the test certificate relative to the repository.
sed -i 's|"../../../tests/data/|"../../mqtts/tests/data/|' "$work/harness/src/main.rs"

flash() {
    llvm-size-22 -A "$1" | awk '$1 == ".text" || $1 == ".rodata" || $1 == ".data" { s += $2 } END { print s }'
}
echo "| experiment | target | variant | flash | unpatched | saved |"
echo "|---|---|---|---:|---:|---:|"
cd "$work/harness"
for target in "${TARGETS[@]}"; do
    mkdir -p "$work/elf/$target"
    for variant in "${variants[@]}"; do
        features="$variant${EXTRA_FEATURES:+ $EXTRA_FEATURES}"
        "$DEB_BIN/cargo" build --release -Zbuild-std=core,alloc --target "$target" \
            --features "$features" --target-dir "$EXP_TARGET_DIR" >"$work/elf/$target/$variant.log" 2>&1 \
            || { echo "build failed: $name $target $variant (log: $work/elf/$target/$variant.log)" >&2; tail -20 "$work/elf/$target/$variant.log" >&2; exit 1; }
        elf="$work/elf/$target/$variant.elf"
        cp "$EXP_TARGET_DIR/$target/release/mqtts-size" "$elf"
        base="$TARGET_DIR/elf/$target/$variant.elf"
        if [[ -f "$base" ]]; then
            echo "| $name | $target | $variant | $(flash "$elf") | $(flash "$base") | $(($(flash "$base") - $(flash "$elf"))) |"
        else
            echo "| $name | $target | $variant | $(flash "$elf") | - | - |"
        fi
    done
done
