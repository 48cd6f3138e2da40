#!/usr/bin/env python3
"""Import cycles in a Rust crate, at two levels: between the crate's top-level modules
(crate::settings, crate::db, ...) and between sibling files inside one module folder.

A parent module using its children and children using `super::` is ordinary Rust and not counted;
two top-level modules that import each other, directly or around a loop, are. Reads `use` trees and
inline `crate::`/`super::` paths as text; macros and re-exports can hide an edge, so open the code at
the names it prints before you believe or dismiss a cycle.

Usage: module-cycles.py [CRATE_SRC_DIR]   (default: actors/src). Exit 1 when there is a cycle.

pgfleet's dependencies point one way (settings -> db -> job -> worker -> supervisor -> binary);
tests/it/docs.rs runs this and wants no cycle (docs/design.md, "Architecture").
"""
import os
import re
import sys

src = sys.argv[1] if len(sys.argv) > 1 else "actors/src"
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def module_of(path):
    """actors/src/db/tls.rs -> ['db', 'tls']; db/mod.rs -> ['db']; lib.rs -> []."""
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return rel


def expand(tree, prefix):
    """Expand a use tree like `crate::{a::{B, c}, d}` into paths."""
    tree = tree.strip()
    depth, start, parts = 0, 0, []
    if "{" not in tree:
        return [prefix + [p for p in tree.split("::") if p and p != "self"]]
    head, rest = tree.split("{", 1)
    rest = rest.rsplit("}", 1)[0]
    base = prefix + [p for p in head.split("::") if p]
    for i, ch in enumerate(rest):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(rest[start:i])
            start = i + 1
    parts.append(rest[start:])
    out = []
    for p in parts:
        if p.strip():
            out.extend(expand(p, base))
    return out


files = {}
for root, _, names in os.walk(src):
    for n in names:
        if n.endswith(".rs"):
            files[os.path.join(root, n)] = None

edges = {}  # (from_module_path, to_module_path) -> names
for path in files:
    text = open(path, encoding="utf-8").read()
    text = re.sub(r"//[^\n]*", "", text)
    text = re.split(r"#\[cfg\(test\)\]\s*mod\s+tests", text)[0]  # unit tests may use anything
    me = module_of(path)
    paths = []
    for stmt in re.findall(r"\buse\s+([^;]+);", text):
        stmt = re.sub(r"\s+as\s+" + IDENT, "", stmt)
        paths.extend(expand(stmt, []))
    paths += [p.split("::") for p in re.findall(r"\b(?:crate|super)(?:::" + IDENT + ")+", text)]
    for p in paths:
        if not p:
            continue
        if p[0] == "crate":
            target = p[1:]
        elif p[0] == "super":
            up = me if os.path.basename(path) in ("mod.rs", "lib.rs") else me
            target = up[:-1]
            for seg in p[1:]:
                if seg == "super":
                    target = target[:-1]
                else:
                    target.append(seg)
        else:
            continue
        edges.setdefault((tuple(me), tuple(target)), set()).add(p[-1])


def resolve(target, known):
    """The longest prefix of target that is a module of the crate."""
    for k in range(len(target), -1, -1):
        if tuple(target[:k]) in known:
            return tuple(target[:k])
    return ()


known = {tuple(module_of(p)) for p in files}


def graph(level_of):
    g = {}
    for (a, t), names in edges.items():
        b = resolve(list(t), known)
        la, lb = level_of(a, b)
        if la is None or la == lb:
            continue
        g.setdefault(la, {}).setdefault(lb, set()).update(names)
    return g


def sccs(g):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, {}):
            if w not in index:
                visit(w)
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
                out.append(sorted(comp))
    sys.setrecursionlimit(10000)
    for v in list(g):
        if v not in index:
            visit(v)
    return out


def top(a, b):
    if not a or not b:
        return None, None
    return a[:1], b[:1]


def siblings(a, b):
    # files in one folder (not its mod.rs) that import each other
    if len(a) < 2 or len(b) < 2 or a[:-1] != b[:-1]:
        return None, None
    return a, b


found = 0
for name, level in (("top-level modules", top), ("sibling files", siblings)):
    g = graph(level)
    for comp in sccs(g):
        found += 1
        members = set(comp)
        ties = []
        for a in comp:
            for b, names in sorted(g.get(a, {}).items()):
                if b in members:
                    ties.append(f"{'::'.join(a)} -> {'::'.join(b)} ({', '.join(sorted(names)[:4])})")
        print(f"cycle among {name}: " + " | ".join(ties))
print(f"{found} import cycle(s) in {src}")
sys.exit(1 if found else 0)
