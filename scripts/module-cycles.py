#!/usr/bin/env python3
"""Lists import cycles between Gatehouse's modules at every level: the top-level parts of
src/ (proxy, auth, api, ...) and the siblings inside each (auth::jwt, auth::revocation, ...).

    python3 scripts/module-cycles.py      # in the repository root; exit 1 if there is a cycle

A module is a file (src/auth/jwt.rs is auth::jwt, src/auth/mod.rs is auth). Every
`crate::`, `super::` and `self::` path outside `#[cfg(test)]` code, in `use` trees and
inline, is an edge from the module that writes it to the deepest module it names. An edge
counts between the two siblings under the pair's nearest common parent; a child naming its
own parent (or the reverse) is how Rust modules are built and is not counted.
"""
import os
import re
import sys
from collections import defaultdict

SRC = os.path.join(os.getcwd(), "src")
if not os.path.isdir(SRC):
    sys.exit("no src/ here: run this in the repository root")

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def module_of(path):
    rel = os.path.relpath(path, SRC)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return tuple(rel)


def strip(text):
    """Drops comments, strings and `#[cfg(test)]` items, so only live code is read."""
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'r#*"(?:.|\n)*?"#*|"(?:\\.|[^"\\])*"', '""', text)
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]", text):
        if m.start() < i:
            continue
        out.append(text[i:m.start()])
        # Skip the item the attribute is on: up to its `;` or its balanced `{ ... }`.
        j, depth = m.end(), 0
        while j < len(text):
            c = text[j]
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    j += 1
                    break
            elif c == ";" and depth == 0:
                j += 1
                break
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


def expand(tree):
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e]."""
    tree = tree.strip()
    brace = tree.find("{")
    if brace < 0:
        return [re.sub(r"\s+as\s+\w+$", "", tree).strip()]
    head, body = tree[:brace], tree[brace + 1:tree.rfind("}")]
    parts, depth, cur = [], 0, ""
    for c in body:
        if c == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += c == "{"
        depth -= c == "}"
        cur += c
    parts.append(cur)
    return [head + p for part in parts if part.strip() for p in expand(part.strip())]


def paths_in(text):
    found = []
    for m in re.finditer(r"\buse\s+((?:crate|super|self)\s*::[^;]*);", text):
        found += expand(m.group(1))
    rest = re.sub(r"\buse\s+[^;]*;", "", text)
    found += re.findall(rf"\b(?:crate|super|self)(?:\s*::\s*{IDENT})+", rest)
    return [re.sub(r"\s+", "", p) for p in found]


files = [os.path.join(r, f) for r, _, fs in os.walk(SRC) for f in fs if f.endswith(".rs")]
modules = {module_of(p) for p in files}
edges = defaultdict(set)
where = {}
for path in files:
    me = module_of(path)
    text = strip(open(path, encoding="utf-8").read())
    for p in paths_in(text):
        segs = [s for s in p.split("::") if s]
        # `self::` is this module, each `super::` one level up, `crate::` the root.
        target, rest = ([], segs[1:]) if segs[0] == "crate" else (list(me), segs[1:] if segs[0] == "self" else segs)
        while rest and rest[0] == "super":
            target, rest = target[:-1], rest[1:]
        for s in rest:
            if tuple(target + [s]) in modules:
                target.append(s)
            else:
                break
        target = tuple(target)
        # The nearest common parent, and the two siblings under it.
        n = 0
        while n < min(len(me), len(target)) and me[n] == target[n]:
            n += 1
        if n == len(me) or n == len(target):
            continue  # the same module, or a parent and its child
        a, b = me[: n + 1], target[: n + 1]
        edges[a].add(b)
        where.setdefault((a, b), os.path.relpath(path, os.getcwd()))

# Strongly connected components (Tarjan): every component of two or more is a cycle.
index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]


def connect(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in sorted(edges.get(v, ())):
        if w not in index:
            connect(w)
            low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop()
            on.discard(w)
            comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            comps.append(sorted(comp))


sys.setrecursionlimit(10000)
for v in sorted(set(edges) | {w for ws in edges.values() for w in ws}):
    if v not in index:
        connect(v)

name = lambda m: "::".join(m)  # noqa: E731
for comp in comps:
    print("cycle: " + " <-> ".join(name(m) for m in comp))
    for a in comp:
        for b in sorted(edges[a]):
            if b in comp:
                print(f"    {name(a)} -> {name(b)}   ({where[(a, b)]})")
if not comps:
    print(f"no import cycle among the {len(modules)} modules of src/, at any level")
sys.exit(1 if comps else 0)
