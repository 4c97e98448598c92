#!/usr/bin/env python3
"""Checks the shape of the code that the compiler does not (part of
scripts/test.sh; docs/architecture.md, "Layers", says why each rule):

- layers run one way: a module imports only modules of its own layer or
  below (the LAYERS table, the map of src/lib.rs), and the top-level
  modules of one layer, like the sibling modules inside any module, never
  import each other both ways;
- files stay under MAX_FILE_LINES and functions under MAX_FN_LINES, unless
  a `// Long: <reason>` comment stands right above the function, or, for a
  file, a `//! Long: <reason>` line in its module doc;
- docs and code cite only what a reader of the repository can open: no
  design notes kept elsewhere, issue numbers or work rounds.

Prints every finding and exits 1 if there is any.
"""

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_FILE_LINES = 400
MAX_FN_LINES = 50

# Top to bottom: a module may import its own layer and the layers below.
LAYERS = [
    ["main", "app", "admin", "demo", "warmup", "reload", "listener", "shutdown", "telemetry"],
    ["proxy"],
    ["config"],
    ["rules"],
    ["cache"],
    ["metrics"],
    ["outcome", "clock"],
]
RANK = {module: rank for rank, layer in enumerate(LAYERS) for module in layer}
CODE_DIRS = ["src", "tests", "benches", "examples", "fuzz/fuzz_targets"]
CITED = re.compile(r"DESIGN\.md|STYLE\.md|\bissue [0-9]|\b(first|second|third|fourth|fifth|sixth|seventh) round")
CITE_PATHS = ["src", "tests", "docs", "README.md", "benches", "scripts", "helm", "config"]


def rust_files(dirs):
    for d in dirs:
        for base, _, files in os.walk(os.path.join(ROOT, d)):
            if "/target" in base:
                continue
            for f in sorted(files):
                if f.endswith(".rs"):
                    yield os.path.join(base, f)


def strip(text):
    """The text with comments, strings and char literals blanked (newlines
    kept), so braces and paths are only code."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif re.match(r'b?r#*"', text[i:i + 8]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'b?r(#*)"', text[i:])
            close = '"' + m.group(1)
            j = text.find(close, i + m.end())
            j = n if j < 0 else j + len(close)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(re.sub(r"[^\n]", " ", text[i:j + 1]))
            i = j + 1
        elif c == "'":
            m = re.match(r"'(\\.[^']*|[^\\'])'", text[i:])
            if m:
                out.append(" " * m.end())
                i += m.end()
            else:  # a lifetime
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def module_of(path):
    """The module path of a file under src/, e.g. ['proxy', 'fill']."""
    rel = os.path.relpath(path, os.path.join(ROOT, "src"))[:-3].split(os.sep)
    if rel == ["lib"]:
        return []
    return rel


def check_layers(problems):
    edges = {}
    for path in rust_files(["src"]):
        mod = module_of(path)
        if not mod:
            continue
        code = strip(open(path).read())
        top = mod[0]
        for m in re.finditer(r"\b(crate|cachecar)::([a-z_][a-z0-9_]*)", code):
            target = m.group(2)
            if target not in RANK or target == top:
                continue
            if RANK[target] < RANK.get(top, 0):
                line = code[:m.start()].count("\n") + 1
                problems.append(f"{os.path.relpath(path, ROOT)}:{line}: `{top}` imports `{target}`, a layer above it")
            edges.setdefault(top, set()).add(target)
        for m in re.finditer(r"\bsuper::([a-z_][a-z0-9_]*)", code):
            parent = mod[:-1] if not path.endswith("mod.rs") else mod[:-2]
            sibling = m.group(1)
            if parent and os.path.exists(os.path.join(ROOT, "src", *parent, sibling + ".rs")):
                edges.setdefault("/".join(mod), set()).add("/".join(parent + [sibling]))
        for m in re.finditer(r"\bcrate::((?:[a-z_][a-z0-9_]*::)+)", code):
            parts = m.group(1).strip(":").split("::")
            if len(parts) >= 2 and parts[:-1] == mod[:-1] and parts != mod:
                edges.setdefault("/".join(mod), set()).add("/".join(parts))
    for a, targets in sorted(edges.items()):
        for b in sorted(targets):
            if a < b and a in edges.get(b, set()):
                problems.append(f"`{a}` and `{b}` import each other")


def fn_lengths(code):
    """(name, first line, lines) of every fn with a body."""
    for m in re.finditer(r"\bfn\s+([A-Za-z_][A-Za-z0-9_]*)", code):
        i, depth = m.end(), 0
        while i < len(code) and code[i] not in "{;":
            i += 1
        if i >= len(code) or code[i] == ";":
            continue
        start = i
        while i < len(code):
            if code[i] == "{":
                depth += 1
            elif code[i] == "}":
                depth -= 1
                if depth == 0:
                    break
            i += 1
        first = code[:m.start()].count("\n") + 1
        yield m.group(1), first, code[start:i].count("\n") + 1


def excused(lines, first):
    """Whether a `// Long:` comment stands in the attributes and docs above
    line `first` (1-based)."""
    i = first - 2
    while i >= 0 and re.match(r"\s*(#\[|///|//|$)", lines[i]) and not lines[i].strip() == "":
        if re.match(r"\s*// Long: \S", lines[i]):
            return True
        i -= 1
    return False


def check_sizes(problems):
    for path in rust_files(CODE_DIRS):
        text = open(path).read()
        lines = text.split("\n")
        rel = os.path.relpath(path, ROOT)
        if len(lines) - 1 > MAX_FILE_LINES and not re.search(r"^//! Long: \S", text, re.M):
            problems.append(f"{rel}: {len(lines) - 1} lines, over {MAX_FILE_LINES}")
        for name, first, count in fn_lengths(strip(text)):
            if count > MAX_FN_LINES and not excused(lines, first):
                problems.append(f"{rel}:{first}: fn {name} is {count} lines, over {MAX_FN_LINES}")


def check_citations(problems):
    for item in CITE_PATHS:
        top = os.path.join(ROOT, item)
        paths = [top] if os.path.isfile(top) else [os.path.join(b, f) for b, _, fs in os.walk(top) for f in fs]
        for path in paths:
            if path.endswith("check-structure.py"):
                continue
            try:
                text = open(path, encoding="utf-8").read()
            except (UnicodeDecodeError, OSError):
                continue
            for n, line in enumerate(text.split("\n"), 1):
                if CITED.search(line):
                    problems.append(f"{os.path.relpath(path, ROOT)}:{n}: cites what a reader cannot open: {line.strip()[:80]}")


def main():
    problems = []
    check_layers(problems)
    check_sizes(problems)
    check_citations(problems)
    for p in problems:
        print(p)
    if problems:
        print(f"check-structure: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("check-structure: layers, sizes and citations are in order")
    return 0


if __name__ == "__main__":
    sys.exit(main())
