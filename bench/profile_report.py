#!/usr/bin/env python3
"""Where one request's cost goes, from the data bench/profile.sh records.

  profile_report.py callgrind OUT REQUESTS PERF_MAP   instructions per request (user space)
  profile_report.py perf SCRIPT_TXT REQUESTS HZ       CPU µs per request (user and kernel)

callgrind: self instructions per object (the host binary, libc, and code with no
object: the component compiled by wasmtime), then the component's share by
category, named through wasmtime's perf map (/tmp/perf-PID.map); then how many
calls the component makes into the host (one per call through a wasmtime import
trampoline, `lower-import[N]` or `resource-drop[N]`) and into its allocator.

perf: each sample (`perf script -F tid,ip,sym,dso` with dwarf call chains) goes to
the first bucket its chain matches: instantiation, store drop, Redis, Postgres
(inclusive of their syscalls), else the component by its leaf function, else the
innermost host frame. Chains stop at compiled wasm frames, so the host calls the
component makes land in "wasmtime: host calls".
"""

import bisect
import os
import collections
import re
import sys

GUEST_CATEGORIES = [
    (("sha2", "hmac", "digest"), "HMAC-SHA256"),
    (("serde_json", "serde"), "JSON (serde_json)"),
    (("dlmalloc", "dlfree", "malloc", "free", "rust_alloc", "rust_dealloc",
      "realloc", "raw_vec", "rawvec"), "allocator (dlmalloc)"),
    (("trampoline", "wasmtime_builtin", "libcall"), "wasmtime trampolines"),
    (("fmt", "write_str", "itoa", "ryu", "format"), "formatting (log lines)"),
    (("btree",), "BTreeMap (JSON objects)"),
    (("memcpy", "memset", "memmove", "memcmp", "from_utf8", "trim"), "mem*, utf-8"),
]


def guest_category(name):
    lower = name.lower()
    for keys, category in GUEST_CATEGORIES:
        if any(k in lower for k in keys):
            return category
    return "app logic, SDK, other"


def callgrind(path, requests, perf_map):
    symbols = []
    for line in open(perf_map):
        start, size, name = line.rstrip("\n").split(" ", 2)
        symbols.append((int(start, 16), int(size, 16), name))
    symbols.sort()
    starts = [s[0] for s in symbols]

    def jit_name(text):
        m = re.match(r"(0x[0-9a-f]+)", text or "")
        if not m:
            return None
        address = int(m.group(1), 16)
        i = bisect.bisect_right(starts, address) - 1
        if i >= 0 and symbols[i][0] <= address < symbols[i][0] + symbols[i][1]:
            return symbols[i][2]
        return "?"

    names, obj, fn, callee, in_call = {}, None, None, None, False
    per_object, per_function = collections.Counter(), collections.Counter()
    # Calls the component makes into the host: each import the guest calls
    # goes through one wasmtime trampoline, named in the perf map.
    host_calls, allocations = collections.Counter(), 0

    def resolve(kind, value):
        m = re.match(r"\((\d+)\)(?:\s+(.*))?", value)
        if not m:
            return value
        if m.group(2):
            names[(kind, m.group(1))] = m.group(2)
        return names.get((kind, m.group(1)), value)

    for line in open(path, errors="replace"):
        line = line.rstrip("\n")
        if line.startswith("ob="):
            obj = resolve("ob", line[3:])
        elif line.startswith("fn="):
            fn = (obj, resolve("fn", line[3:]))
        elif line.startswith("cob="):
            resolve("ob", line[4:])
        elif line.startswith("cfn="):
            callee = resolve("fn", line[4:])
        elif line.startswith("calls="):
            in_call = True
            count = int(line[6:].split()[0])
            name = jit_name(callee) or ""
            if "-wasm-call-component-" in name:
                host_calls[name.split("-wasm-call-component-")[1]] += count
            elif name.endswith("::dlmalloc"):
                allocations += count
        elif line[:1].isdigit() or line[:1] in "+-*":
            parts = line.split()
            if in_call:
                in_call = False  # the inclusive cost of a call, not self cost
            elif len(parts) >= 2 and parts[1].isdigit():
                per_object[fn[0]] += int(parts[1])
                per_function[fn] += int(parts[1])
    total = sum(per_object.values())
    print(f"user-space instructions per request: {total / requests:,.0f}")
    for o, cost in per_object.most_common(6):
        label = o if o and o != "???" else "the component (compiled by wasmtime)"
        print(f"{cost / requests:12,.0f} {100 * cost / total:5.1f}%  {label}")
    guest = collections.Counter()
    for (o, f), cost in per_function.items():
        if o in (None, "???"):
            name = jit_name(f)
            guest[guest_category(name) if name else "unnamed"] += cost
    guest_total = sum(guest.values())
    print(f"the component, {guest_total / requests:,.0f} per request, by category:")
    for category, cost in guest.most_common():
        print(f"{cost / requests:12,.0f} {100 * cost / guest_total:5.1f}%  {category}")
    calls = sum(host_calls.values())
    busiest = ", ".join(f"{name} {n / requests:.1f}" for name, n in host_calls.most_common(3))
    print(f"calls from the component into the host per request: {calls / requests:.1f}"
          f" (the busiest imports: {busiest});"
          f" guest allocations (dlmalloc) per request: {allocations / requests:.1f}")
    top = int(os.environ.get("TOP", "0"))
    if top:
        functions = collections.Counter()
        for (o, f), cost in per_function.items():
            if o in (None, "???"):
                functions[jit_name(f) or "unnamed"] += cost
        print(f"the component's {top} costliest functions (self cost per request):")
        for name, cost in functions.most_common(top):
            print(f"{cost / requests:12,.0f}  {name[:140]}")


def head(symbol):
    """A frame's own path, without generic arguments (which name other crates)."""
    s = symbol.lstrip("<")
    for stop in ("<", " ", "("):
        i = s.find(stop)
        if i > 0:
            s = s[:i]
    return s


PHASES = [
    ("epoch ticker thread", lambda s, h, d: "serve::{async_fn#0}::{closure_env#1}" in s),
    ("wasmtime: instantiate",
     lambda s, h, d: (h.startswith("wasmtime") and ("instantiate" in h or "allocate_instance" in h))
     or (d == "JIT" and "module_start" in s)),
    ("wasmtime: store drop, slot reset",
     lambda s, h, d: s.startswith(("<wasmtime::runtime::store::Store<T> as core::ops::drop::Drop>",
                                   "core::ptr::drop_in_place<wasmtime::runtime::store::StoreInner"))
     or (h.startswith("wasmtime") and ("deallocate" in h or "decommit" in h))),
    ("host: Redis key-value (client, its task, syscalls)", lambda s, h, d: h.startswith("redis::")),
    ("host: Postgres (client, pool, syscalls)",
     lambda s, h, d: h.startswith(("tokio_postgres", "postgres_protocol", "deadpool", "vapi_edge_host::pg"))),
]
INNERMOST = [
    ("host: wasi-http, WASI", lambda h: h.startswith("wasmtime_wasi")),
    ("host: variables, key-value glue",
     lambda h: h.startswith(("vapi_edge_host::state", "vapi_edge_host::bindings", "vapi_edge_host::kv"))),
    ("wasmtime: host calls (lift/lower, fibers)", lambda h: h.startswith("wasmtime")),
    ("hyper (HTTP/1 server)", lambda h: h.startswith(("hyper", "httparse", "http::"))),
    ("host: per-request set-up (server.rs)", lambda h: h.startswith("vapi_edge_host")),
    ("tokio (scheduler, I/O driver, parked threads)", lambda h: h.startswith("tokio")),
]


def perf(path, requests, hz):
    samples, chain = [], None
    for line in open(path, errors="replace"):
        if not line.strip():
            if chain:
                samples.append(chain)
            chain = None
        elif not line.startswith("\t"):
            chain = []
        else:
            m = re.match(r"\s*[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$", line)
            if m and chain is not None:
                chain.append((m.group(1), m.group(2)))
    if chain:
        samples.append(chain)
    buckets = collections.Counter()
    for chain in samples:
        frames = [(s, head(s), "JIT" if ".map" in d else d) for s, d in chain]
        real = [f for f in frames if "kernel" not in f[2] and f[2] != "inlined"]
        bucket = next((name for name, rule in PHASES if any(rule(*f) for f in frames)), None)
        if bucket is None and real and real[0][2] == "JIT":
            if any(f[0] == "asm_exc_page_fault" for f in frames):
                bucket = "kernel: page faults in the component's memory"
            else:
                bucket = "component: " + guest_category(real[0][0])
        if bucket is None:
            for s, h, d in frames:
                if "kernel" in d:
                    continue
                bucket = next((name for name, rule in INNERMOST if rule(h)), None)
                if bucket:
                    break
        if bucket is None:
            bucket = "other (kernel, libc)"
        buckets[bucket] += 1
    total = sum(buckets.values())
    print(f"CPU per request: {total / hz / requests * 1e6:.0f} µs ({total} samples at {hz:.0f} Hz)")
    for bucket, n in buckets.most_common():
        print(f"{n / hz / requests * 1e6:8.1f} µs {100 * n / total:5.1f}%  {bucket}")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "callgrind":
        callgrind(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif len(sys.argv) == 5 and sys.argv[1] == "perf":
        perf(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    else:
        sys.exit(__doc__)
