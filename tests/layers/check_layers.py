#!/usr/bin/env python3
"""Checks every #include of src/ against the layer table of docs/LAYERS.md.

    check_layers.py <repository root>

Quoted includes name a file under src/ ("core/page.h") or a public header
under include/ ("shardalloc/region.h"); a quoted include that names neither,
or one without a folder, is a violation too. The layer of a file is its
folder under src/:

    layer            may include (quoted)
    core             core
    platform/bare    core, public headers
    platform/linux   core, platform/linux, public headers
    api              core, platform/*, api, public headers
    override         api, core, platform/*, public headers

The freestanding APIs (the `set(_api ...)` list of cmake/freestanding.cmake,
and every src/api header they include, transitively) are also built for the
bare platform, so they must not include platform/linux, with one documented
exception (docs/LAYERS.md, the region API's shortcut): an include inside a
group opened by exactly `#ifdef SHARDALLOC_PLATFORM_LINUX` (or
`#if defined(SHARDALLOC_PLATFORM_LINUX)`), before its `#else` / `#elif` /
`#endif`, is allowed. A freestanding API file with such an include must not
be included by another one outside the same kind of group (the script does
not follow conditional includes transitively: it only follows the
unconditional ones).

System includes (<...>) are checked for the core only: src/core may include
only CORE_SYSTEM_HEADERS (docs/LAYERS.md lists the same).

Prints every violation and exits 1 if there is one; exits 0 otherwise.
"""

import os
import re
import sys

CORE_SYSTEM_HEADERS = {"atomic", "cstddef", "cstdint", "bit", "new", "type_traits"}

ALLOWED = {
    "core": {"core"},
    "platform/bare": {"core", "public"},
    "platform/linux": {"core", "platform/linux", "public"},
    "api": {"core", "platform/linux", "platform/bare", "api", "public"},
    "override": {"api", "core", "platform/linux", "platform/bare", "public"},
}

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^">]+)[">]')
IF_LINUX = re.compile(r'^\s*#\s*(ifdef\s+SHARDALLOC_PLATFORM_LINUX|if\s+defined\s*\(?\s*SHARDALLOC_PLATFORM_LINUX\s*\)?)\s*(//.*|/\*.*)?$')
IF_ANY = re.compile(r'^\s*#\s*if(n?def)?\b')
ELSE = re.compile(r'^\s*#\s*(else|elif|elifdef|elifndef)\b')
ENDIF = re.compile(r'^\s*#\s*endif\b')


def layer_of(rel):
    """rel: path under src/ -> layer name, or None."""
    parts = rel.split("/")
    if parts[0] == "platform" and len(parts) > 2:
        return "platform/" + parts[1]
    if parts[0] in ("core", "api", "override") and len(parts) > 1:
        return parts[0]
    return None


def includes(path):
    """Yields (line number, kind '<' or '"', name, inside #ifdef SHARDALLOC_PLATFORM_LINUX)."""
    stack = []  # one bool per open conditional group: is it the Linux-only branch?
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if IF_LINUX.match(line):
                stack.append(True)
                continue
            if IF_ANY.match(line):
                stack.append(False)
                continue
            if ELSE.match(line):
                if stack:
                    stack[-1] = False
                continue
            if ENDIF.match(line):
                if stack:
                    stack.pop()
                continue
            m = INCLUDE.match(line)
            if m:
                yield n, m.group(1), m.group(2), any(stack)


def freestanding_api(root):
    text = open(os.path.join(root, "cmake", "freestanding.cmake"), encoding="utf-8").read()
    m = re.search(r"set\(_api\s+([^)]*)\)", text)
    if not m:
        sys.exit("check_layers: no set(_api ...) list in cmake/freestanding.cmake")
    return ["api/" + name for name in m.group(1).split()]


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", ".."))
    src = os.path.join(root, "src")
    public = os.path.join(root, "include")
    errors = []
    files = {}
    for d, _, names in os.walk(src):
        for name in names:
            if name.endswith((".h", ".hpp", ".cpp", ".c")):
                rel = os.path.relpath(os.path.join(d, name), src).replace(os.sep, "/")
                files[rel] = list(includes(os.path.join(src, rel)))
    if not files:
        sys.exit("check_layers: no sources under %s" % src)

    for rel, incs in sorted(files.items()):
        layer = layer_of(rel)
        if layer is None:
            errors.append("src/%s: not in a layer folder of docs/LAYERS.md" % rel)
            continue
        for n, kind, name, _ in incs:
            where = "src/%s:%d: #include %s" % (rel, n, kind + name + (">" if kind == "<" else '"'))
            if kind == "<":
                if layer == "core" and name not in CORE_SYSTEM_HEADERS:
                    errors.append("%s: the core includes only <%s>" % (where, ">, <".join(sorted(CORE_SYSTEM_HEADERS))))
                continue
            if os.path.isfile(os.path.join(src, name)):
                target = layer_of(name)
            elif os.path.isfile(os.path.join(public, name)):
                target = "public"
            else:
                errors.append("%s: names no file under src/ or include/" % where)
                continue
            if target not in ALLOWED[layer]:
                errors.append("%s: %s may not include %s" % (where, layer, target))

    # The freestanding APIs and the api headers they include, unconditionally.
    pending = freestanding_api(root)
    seen = set()
    while pending:
        rel = pending.pop()
        if rel in seen:
            continue
        seen.add(rel)
        if rel not in files:
            errors.append("cmake/freestanding.cmake: src/%s does not exist" % rel)
            continue
        for n, kind, name, linux_only in files[rel]:
            if kind != '"':
                continue
            if name.startswith("platform/linux/") and not linux_only:
                errors.append('src/%s:%d: #include "%s": a freestanding API includes platform/linux '
                              "outside #ifdef SHARDALLOC_PLATFORM_LINUX" % (rel, n, name))
            if name.startswith("api/") and not linux_only:
                pending.append(name)

    for e in errors:
        print(e)
    if errors:
        print("check_layers: %d violation(s) of docs/LAYERS.md" % len(errors))
        return 1
    print("check_layers: %d files under src/, %d freestanding API files, every include allowed"
          % (len(files), len(seen)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
