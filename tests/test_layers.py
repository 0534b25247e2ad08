"""The house: harness's packages import only from their own layer or below (lazy imports inside functions
count too), no module imports itself back through others, and no module, class or function outgrows the sizes
the layout promises."""

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT / "harness"
# bottom to top, as harness/__init__.py describes them
LAYERS = [
    {"__init__", "errors", "files", "progress", "config"},
    {"measures", "stats"},
    {"data"},
    {"store"},
    {"nets"},
    {"inference"},
    {"sweep"},
    {"cli", "bench", "__main__"},
]
MAX_MODULE_LINES, MAX_CLASS_LINES, MAX_FUNCTION_LINES = 500, 200, 80


def layer(module: str) -> int:
    """The layer of `harness.a.b`: that of its first part below harness."""
    head = module.split(".")[1] if "." in module else "__init__"
    return next(i for i, names in enumerate(LAYERS) if head in names)


@functools.cache
def modules() -> dict[str, Path]:
    out = {}
    for p in sorted(HARNESS.rglob("*.py")):
        parts = p.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def imports(path: Path) -> set[str]:
    """Every harness module `path` imports, at module level or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("harness"):
            known = modules()  # cached: the tree is walked once
            for alias in node.names:  # `from harness.store import runs` imports the module harness.store.runs
                full = f"{node.module}.{alias.name}"
                out.add(full if full in known else node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("harness")}
    return out


def test_every_harness_module_has_a_layer_and_imports_absolutely():
    """A module outside LAYERS (a new package) must be placed there first; relative imports would escape the
    checks below, so the harness has none."""
    heads = set().union(*LAYERS)
    for name, path in modules().items():
        head = name.split(".")[1] if "." in name else "__init__"
        assert head in heads, f"{name}: add its package to LAYERS (and to harness/__init__.py's list)"
        relative = [
            n.lineno for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ImportFrom) and n.level
        ]
        assert not relative, f"{path.relative_to(ROOT)}:{relative[0]}: a relative import; write it absolutely"


# what each package's docstring says it may import of the harness (besides itself)
MAY_IMPORT = {
    "measures": set(),
    "stats": {"errors"},
    "data": {"config", "errors", "files"},
    "store": {"config", "errors", "files", "data"},
    "nets": {"config", "errors", "progress", "measures", "data"},
    "inference": {"config", "errors", "progress", "measures", "stats", "data", "store", "nets"},
}
ONLY_THROUGH = {("store", "data"): {"harness.store.identity"}, ("inference", "store"): {"harness.store.identity"}}


def test_each_package_imports_only_what_its_docstring_allows():
    wrong = []
    for name, path in modules().items():
        head = name.split(".")[1] if "." in name else None
        if head not in MAY_IMPORT:
            continue
        for dep in imports(path):
            dhead = dep.split(".")[1] if "." in dep else "__init__"
            allowed = dhead in (head, "__init__") or dhead in MAY_IMPORT[head]  # __init__: the version
            through = ONLY_THROUGH.get((head, dhead))
            if through and name not in through and dep not in through:
                allowed = False
            if not allowed:
                wrong.append(f"{name} imports {dep}")
    assert not wrong, "\n".join(wrong)


def test_no_import_goes_up_a_layer():
    up = [
        f"{name} (layer {layer(name)}) imports {dep} (layer {layer(dep)})"
        for name, path in modules().items()
        for dep in imports(path)
        if layer(dep) > layer(name)
    ]
    assert not up, "\n".join(up)


def test_no_import_circle_at_module_level():
    known = modules()
    graph = {}
    for name, path in known.items():
        top = ast.parse(path.read_text()).body  # module-level statements only: lazy imports break circles on purpose
        deps = set()
        for node in top:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("harness"):
                deps |= {
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module for a in node.names
                }
        graph[name] = {d for d in deps if d in known and d != name and not name.startswith(d + ".") and d != "harness"}
    state: dict[str, int] = {}

    def visit(n, trail):
        state[n] = 1
        for d in graph[n]:
            if state.get(d) == 1:
                raise AssertionError("import circle: " + " -> ".join(trail[trail.index(d) :] + [d]))
            if d not in state:
                visit(d, trail + [d])
        state[n] = 2

    for n in graph:
        if n not in state:
            visit(n, [n])


def test_each_package_says_what_it_holds_and_may_import():
    for init in HARNESS.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert len(doc.splitlines()) >= 2 and "import" in doc, f"{init.relative_to(ROOT)}: {doc!r}"


def test_no_module_class_or_function_outgrows_the_layout():
    over = []
    for p in sorted(HARNESS.rglob("*.py")) + sorted((ROOT / "analysis").glob("*.py")):
        text = p.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            over.append(f"{p.relative_to(ROOT)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            limit = MAX_CLASS_LINES if isinstance(node, ast.ClassDef) else MAX_FUNCTION_LINES
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.end_lineno - node.lineno + 1 > limit:
                over.append(f"{p.relative_to(ROOT)}:{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not over, "\n".join(over)
