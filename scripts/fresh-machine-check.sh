#!/usr/bin/env bash
# Proves that what the project needs comes from packages, not from files
# made by hand on this machine (issue 14).
#
#   bash scripts/fresh-machine-check.sh                 audit, then the README's
#                                                       board build with every
#                                                       rust-lld hidden
#   bash scripts/fresh-machine-check.sh --audit-only    the audit alone
#   bash scripts/fresh-machine-check.sh -- CMD [ARG...] audit, then CMD with
#                                                       every rust-lld hidden
#
# 1. Audit: each tool `.ci/run` and the scripts use, with the package that
#    installs it; one line per tool, and a non-zero exit naming the packages
#    when something is missing.
# 2. Hidden linker: Debian's packages install no `rust-lld` (lld-22 gives
#    `ld.lld-22`, which the linking projects name in .cargo/config.toml).
#    A `rust-lld` found on PATH, in ~/.cargo/bin or in Debian rustc's tool
#    folder was made by hand (or comes from another toolchain) and could hide
#    a dependency on it. The command runs in a private mount namespace where
#    an overlay with a whiteout removes each such file from view (nothing on
#    the machine changes); the check fails if one is still visible there.
#    Needs root (as CI runs) only when there is something to hide.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEB_BIN="${DEB_BIN:-/usr/bin}"

die() { echo "fresh-machine-check: ERROR: $*" >&2; exit 1; }

audit_only=0
command_given=0
cmd=()
while (($#)); do
    case "$1" in
        --audit-only) audit_only=1; shift ;;
        --) shift; cmd=("$@"); command_given=1; break ;;
        *) echo "usage: $0 [--audit-only] [-- COMMAND [ARG...]]" >&2; exit 2 ;;
    esac
done
((command_given)) || cmd=(bash "$repo_root/scripts/build-boards.sh" esp32c3)
((${#cmd[@]})) || die "no command after --"

# --- 1. audit ----------------------------------------------------------------
# what | how it is found | the package (or command) that installs it | who needs it
REQUIREMENTS=(
    "Debian's rustc|exec:$DEB_BIN/rustc|apt-get install rustc-web|cross builds, boards, size harness"
    "Debian's cargo|exec:$DEB_BIN/cargo|apt-get install cargo-web|cross builds, boards, size harness"
    "std sources for -Zbuild-std|file:/usr/lib/rustlib/src/rust/library/core/src/lib.rs|apt-get install rust-web-src|cross builds, boards, size harness"
    "linker ld.lld-22|cmd:ld.lld-22|apt-get install lld-22|boards, size harness"
    "llvm-size-22|cmd:llvm-size-22|apt-get install llvm-22|boards (sizes), size harness"
    "llvm-nm-22|cmd:llvm-nm-22|apt-get install llvm-22|size harness (attribution)"
    "llvm-dwarfdump-22|cmd:llvm-dwarfdump-22|apt-get install llvm-22|size harness (attribution)"
    "mosquitto|exec:/usr/sbin/mosquitto|apt-get install mosquitto|integration tests (started by the tests)"
    "qemu-system-riscv32|exec:/usr/bin/qemu-system-riscv32|apt-get install qemu-system-misc|emulated boards (tests/emulated_boards.rs)"
    "qemu-system-arm|exec:/usr/bin/qemu-system-arm|apt-get install qemu-system-arm|emulated boards (tests/emulated_boards.rs)"
    "openssl|cmd:openssl|apt-get install openssl|tests/cli.rs (fingerprints cross-checked)"
    "CA bundle|file:/etc/ssl/certs/ca-certificates.crt|apt-get install ca-certificates|cargo and pip over HTTPS"
    "C compiler|cmd:cc|apt-get install gcc libc6-dev|ring (rustls in tests)"
    "C++ compiler|cmd:c++|apt-get install g++|libFuzzer (cargo fuzz)"
    "python3 venv|venv:python3|apt-get install python3-venv|esptool for board images"
    "rustup's cargo|cmd:cargo|rustup (the machine's toolchain)|host build and tests"
    "rustfmt|run:cargo fmt --version|rustup component add rustfmt|CI step 2"
    "clippy|run:cargo clippy --version|rustup component add clippy|CI step 3"
    "cargo-fuzz|cmd:cargo-fuzz|cargo install cargo-fuzz --locked --version 0.13.2 (.ci/run does)|CI step 6d"
)

missing=()
echo "fresh-machine-check: what the project uses, and where it comes from"
for entry in "${REQUIREMENTS[@]}"; do
    IFS='|' read -r what how from who <<<"$entry"
    kind="${how%%:*}"
    arg="${how#*:}"
    ok=0
    case "$kind" in
        exec) [[ -x "$arg" ]] && ok=1 ;;
        file) [[ -f "$arg" ]] && ok=1 ;;
        cmd) command -v "$arg" >/dev/null 2>&1 && ok=1 ;;
        run) read -r -a words <<<"$arg"; "${words[@]}" >/dev/null 2>&1 && ok=1 ;;
        # Debian's python3 makes no venv with pip (ensurepip) without
        # python3-venv; build-boards.sh needs pip in it: try it for real.
        venv) venv_probe="$(mktemp -d)"
              "$arg" -m venv "$venv_probe/v" >/dev/null 2>&1 && [[ -x "$venv_probe/v/bin/pip" ]] && ok=1
              rm -rf "$venv_probe" ;;
        *) die "bad requirement kind '$kind'" ;;
    esac
    if ((ok)); then
        printf '  ok       %-28s (%s)\n' "$what" "$who"
    else
        printf '  MISSING  %-28s %s   (%s)\n' "$what" "$from" "$who"
        missing+=("$what: $from")
    fi
done
if ((${#missing[@]})); then
    for m in "${missing[@]}"; do echo "fresh-machine-check: MISSING $m" >&2; done
    die "${#missing[@]} requirement(s) missing; .ci/run installs all of them"
fi
((audit_only)) && exit 0

# --- 2. the command with every rust-lld hidden --------------------------------
# Where a rust-lld would be found: PATH as the scripts set it (Debian's bin
# first), ~/.cargo/bin, and the tool folder Debian's rustc searches first.
host="$("$DEB_BIN/rustc" -vV | sed -n 's/^host: //p')"
sysroot="$("$DEB_BIN/rustc" --print sysroot)"
search_dirs=()
IFS=: read -r -a path_dirs <<<"$DEB_BIN:$PATH"
for dir in "${path_dirs[@]}" "${CARGO_HOME:-$HOME/.cargo}/bin" "$sysroot/lib/rustlib/$host/bin"; do
    [[ -n "$dir" && -d "$dir" ]] || continue
    dir="$(cd "$dir" && pwd -P)"
    [[ " ${search_dirs[*]-} " == *" $dir "* ]] || search_dirs+=("$dir")
done
hide=()
for dir in "${search_dirs[@]}"; do
    if [[ -e "$dir/rust-lld" || -L "$dir/rust-lld" ]]; then
        hide+=("$dir")
    fi
done

if ((${#hide[@]} == 0)); then
    echo "fresh-machine-check: no rust-lld in ${search_dirs[*]}: nothing to hide"
    echo "+ ${cmd[*]}"
    "${cmd[@]}"
    exit $?
fi

echo "fresh-machine-check: hiding rust-lld in: ${hide[*]}"
((EUID == 0)) || die "rust-lld found in ${hide[*]}; hiding it needs root (or move it away and rerun)"
command -v unshare >/dev/null || die "unshare not found (apt-get install util-linux)"
whiteouts="$(mktemp -d)"
trap 'rm -rf "$whiteouts"' EXIT
mkdir "$whiteouts/layer"
# An overlay whiteout: a character device 0/0 hides the name below it.
mknod "$whiteouts/layer/rust-lld" c 0 0 || die "mknod failed (no overlay whiteouts here)"

# Inside the namespace: mount the overlays, prove rust-lld is gone, run.
# shellcheck disable=SC2016
inner='
set -euo pipefail
layer="$1"; shift
count="$1"; shift
for ((i = 0; i < count; i++)); do
    dir="$1"; shift
    mount -t overlay overlay -o "lowerdir=$layer:$dir" "$dir" \
        || { echo "fresh-machine-check: ERROR: cannot overlay $dir" >&2; exit 1; }
    if [[ -e "$dir/rust-lld" ]]; then
        echo "fresh-machine-check: ERROR: $dir/rust-lld still visible" >&2; exit 1
    fi
done
if command -v rust-lld >/dev/null 2>&1; then
    echo "fresh-machine-check: ERROR: rust-lld still on PATH: $(command -v rust-lld)" >&2; exit 1
fi
echo "fresh-machine-check: rust-lld hidden; running: $*"
exec "$@"
'
unshare --mount --propagation private \
    bash -c "$inner" fresh-machine-check "$whiteouts/layer" "${#hide[@]}" "${hide[@]}" "${cmd[@]}"
