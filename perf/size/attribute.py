#!/usr/bin/env python3
"""Where the bytes of a size-harness ELF go: per crate and per symbol.

Two views, because fat LTO inlines most of the library into a few large
functions (the async state machines end up in `_start`):

- code by source: every instruction address is charged to the source file
  its DWARF line-table row names (the innermost inlined frame), and the file
  to its crate (cargo registry folder, the Rust library, this repository);
- symbols by name: `llvm-nm --size-sort --print-size -C`, each symbol charged
  to the first crate path in its demangled name (`<p256::Scalar as Mul>::mul`
  -> p256). This one covers .rodata too (named constants only).

Usage:
  attribute.py ELF                      per-crate tables for one ELF
  attribute.py --diff BASE ELF [-n 30]  crates and symbols ELF has beyond BASE
Env: LLVM_SUFFIX (default "-22") picks llvm-nm-22 / llvm-dwarfdump-22.
"""

import argparse
import collections
import functools
import os
import re
import signal
import subprocess
import sys

SUFFIX = os.environ.get("LLVM_SUFFIX", "-22")
REPO = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", ".."))


def tool(name):
    return name + SUFFIX


def run(args):
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def crate_of_path(path):
    """Maps a source path to a crate name."""
    m = re.search(r"/registry/src/[^/]+/([^/]+)/", path)
    if m:
        # "p256-0.13.2" -> "p256"; "rustls-webpki-0.103.17" -> "rustls-webpki"
        return re.sub(r"-\d+\.\d+\.\d+[^/]*$", "", m.group(1))
    m = re.search(r"/library/(core|alloc|compiler-builtins)/", path)
    if m:
        return m.group(1).replace("-", "_")
    return package_of(os.path.dirname(path))


@functools.lru_cache(maxsize=None)
def package_of(directory):
    """The package whose Cargo.toml is nearest above `directory`."""
    while directory not in ("", "/"):
        manifest = os.path.join(directory, "Cargo.toml")
        if os.path.isfile(manifest):
            with open(manifest, encoding="utf-8") as f:
                m = re.search(r'^name\s*=\s*"([^"]+)"', f.read(), re.M)
            name = m.group(1) if m else directory
            return "harness" if name == "mqtts-size" else name
        directory = os.path.dirname(directory)
    return "other"


def compile_units(elf):
    """debug_line offset -> comp_dir of the compile unit that owns it."""
    units = {}
    comp_dir = stmt = None
    for line in run([tool("llvm-dwarfdump"), "--debug-info", "--recurse-depth=0", elf]).splitlines():
        line = line.strip()
        if line.endswith("DW_TAG_compile_unit"):
            comp_dir = stmt = None
        m = re.match(r'DW_AT_comp_dir\s+\("(.*)"\)', line)
        if m:
            comp_dir = m.group(1)
        m = re.match(r"DW_AT_stmt_list\s+\((0x[0-9a-f]+)\)", line)
        if m:
            stmt = int(m.group(1), 16)
        if comp_dir is not None and stmt is not None:
            units[stmt] = comp_dir
            comp_dir = stmt = None
    return units


def text_range(elf):
    """(start, end) addresses of .text."""
    for line in run([tool("llvm-size"), "-A", elf]).splitlines():
        parts = line.split()
        if parts and parts[0] == ".text":
            return int(parts[2]), int(parts[2]) + int(parts[1])
    raise SystemExit(f"{elf}: no .text section")


def code_by_crate(elf, by_file=False):
    """Bytes of code per crate, from the DWARF line tables. Rows outside
    .text (functions the linker discarded keep rows at address 0) are
    ignored; where rows overlap, the later one wins."""
    units = compile_units(elf)
    start, end = text_range(elf)
    owner = [None] * (end - start)
    dirs, files = {}, {}
    comp_dir = ""
    previous = None  # (address, crate) of the last row in the sequence
    pending_file = None
    for line in run([tool("llvm-dwarfdump"), "--debug-line", elf]).splitlines():
        m = re.match(r"debug_line\[(0x[0-9a-f]+)\]", line)
        if m:
            comp_dir = units.get(int(m.group(1), 16), "")
            dirs, files, previous = {0: comp_dir}, {}, None
            continue
        m = re.match(r'\s*include_directories\[\s*(\d+)\] = "(.*)"', line)
        if m:
            d = m.group(2)
            dirs[int(m.group(1))] = d if d.startswith("/") else os.path.join(comp_dir, d)
            continue
        m = re.match(r"file_names\[\s*(\d+)\]:", line)
        if m:
            pending_file = [int(m.group(1)), None]
            continue
        m = re.match(r'\s*name: "(.*)"', line)
        if m and pending_file is not None:
            pending_file[1] = m.group(1)
            continue
        m = re.match(r"\s*dir_index: (\d+)", line)
        if m and pending_file is not None:
            index, name = pending_file
            path = name if name.startswith("/") else os.path.join(dirs.get(int(m.group(1)), comp_dir), name)
            crate = crate_of_path(path)
            files[index] = (crate, os.path.normpath(path)) if by_file else crate
            pending_file = None
            continue
        m = re.match(r"0x([0-9a-f]+)\s+\d+\s+\d+\s+(\d+)\s.*", line)
        if m:
            address, crate = int(m.group(1), 16), files.get(int(m.group(2)), "?")
            if previous is not None:
                lo, hi = max(previous[0], start), min(address, end)
                if lo < hi:
                    owner[lo - start:hi - start] = [previous[1]] * (hi - lo)
            previous = None if "end_sequence" in line else (address, crate)
    totals = collections.Counter(owner)
    totals["(no line info)"] = totals.pop(None, 0)
    return totals


def crate_of_symbol(name):
    """The first crate path in a demangled symbol name."""
    stripped = re.sub(r"^[<&(\[\s]*((mut|dyn|const) )*", "", name)
    m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)::", stripped)
    if not m:
        return "(no path)"
    return {"mqtts_size": "harness", "webpki": "rustls-webpki"}.get(m.group(1), m.group(1).replace("_", "-") if m.group(1) not in ("core", "alloc", "compiler_builtins") else m.group(1))


def symbols(elf):
    """(name, section kind, size) of every sized symbol."""
    out = []
    for line in run([tool("llvm-nm"), "--size-sort", "--print-size", "-C", elf]).splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4:
            out.append((parts[3], parts[2].lower(), int(parts[1], 16)))
    return out


def symbols_by_crate(elf):
    code, data = collections.Counter(), collections.Counter()
    for name, kind, size in symbols(elf):
        (code if kind in "tw" else data)[crate_of_symbol(name)] += size
    return code, data


def normalise(name):
    """A symbol name without the harness's type parameters, so that the
    same function in two variants compares equal."""
    name = re.sub(r"mqtts_size::[A-Za-z_:]+", "H", name)
    # Local labels carry per-build hashes (v0 crate disambiguators, module
    # hashes of anonymous constants).
    name = re.sub(r"Cs[0-9A-Za-z]+_(\d)", r"Cs_\1", name)
    return re.sub(r"^\.Lanon\.[0-9a-f]+\.", ".Lanon.", name)


def table(rows, headers):
    widths = [max(len(str(r[i])) for r in rows + [headers]) for i in range(len(headers))]
    fmt = " | ".join("{:<%d}" % w if i == 0 else "{:>%d}" % w for i, w in enumerate(widths))
    print("| " + fmt.format(*headers) + " |")
    print("|" + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|")
    for r in rows:
        print("| " + fmt.format(*r) + " |")


def one(elf):
    by_source = code_by_crate(elf)
    code, data = symbols_by_crate(elf)
    crates = sorted(set(by_source) | set(code) | set(data), key=lambda c: -(by_source[c] + data[c]))
    rows = [(c, by_source[c], code[c], data[c]) for c in crates if by_source[c] + code[c] + data[c]]
    rows.append(("total", sum(by_source.values()), sum(code.values()), sum(data.values())))
    table(rows, ("crate", "code by source", "code by symbol name", "named data"))


def diff(base, elf, count):
    src_a, src_b = code_by_crate(base), code_by_crate(elf)
    (code_a, data_a), (code_b, data_b) = symbols_by_crate(base), symbols_by_crate(elf)
    crates = set(src_a) | set(src_b) | set(code_a) | set(code_b) | set(data_a) | set(data_b)
    rows = []
    for c in crates:
        d = (src_b[c] - src_a[c], code_b[c] - code_a[c], data_b[c] - data_a[c])
        if any(d):
            rows.append((c,) + d)
    rows.sort(key=lambda r: -(r[1] + r[3]))
    rows.append(("total",) + tuple(sum(r[i] for r in rows) for i in (1, 2, 3)))
    table(rows, ("crate", "code by source", "code by symbol name", "named data"))
    print()
    a = collections.Counter()
    for name, kind, size in symbols(base):
        a[normalise(name)] += size
    b = collections.Counter()
    for name, kind, size in symbols(elf):
        b[normalise(name)] += size
    changes = [(b[n] - a[n], n) for n in set(a) | set(b) if b[n] != a[n]]
    changes.sort(key=lambda c: -abs(c[0]))
    table([(n[:150], d) for d, n in changes[:count]], ("symbol (H = harness type)", "bytes"))


def main():
    # Quiet when piped into `head`.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--diff", metavar="BASE", help="compare with this ELF")
    parser.add_argument("-n", type=int, default=30, help="symbols to list in a diff")
    parser.add_argument("--files", metavar="CRATE", help="code by source file of one crate")
    parser.add_argument("elf")
    args = parser.parse_args()
    if args.files:
        after = code_by_crate(args.elf, by_file=True)
        before = code_by_crate(args.diff, by_file=True) if args.diff else collections.Counter()
        rows = [(k[1], after[k] - before[k]) for k in set(after) | set(before)
                if isinstance(k, tuple) and k[0] == args.files and after[k] != before[k]]
        rows.sort(key=lambda r: -r[1])
        table(rows[: args.n], ("file", "code bytes" + (" (difference)" if args.diff else "")))
    elif args.diff:
        diff(args.diff, args.elf, args.n)
    else:
        one(args.elf)


if __name__ == "__main__":
    sys.exit(main())
