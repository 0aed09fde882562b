"""The architecture, checked on the source: who may import whom, how long a function may be, and
that configuration comes only from settings.

The rules (see the issue "One home for each concept"):
- core (package `citygrid`) is the shared base: it imports no part and no tooling;
- the parts edge, stream and ledger import core and themselves, never each other or the tooling;
- the dashboards import core and themselves; sim, ops and devtools are tooling and may import anything.
Every `import` and `from … import` counts, at module level or inside a function; naming a module in a
string for lazy loading (core/cli.py) is not an import and passes.
"""

from __future__ import annotations

import ast
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIRS = ("core", "edge", "stream", "ledger", "sim", "ops", "devtools", "dashboards")
PARTS = ("edge", "stream", "ledger")
# What each folder may import, as folders; a folder missing here may import every folder.
ALLOWED: dict[str, frozenset[str]] = {
    "core": frozenset({"core"}),
    **{part: frozenset({"core", part}) for part in PARTS},
    "dashboards": frozenset({"core", "dashboards"}),
}
MAX_FUNCTION_LINES = 60
# The one module that reads the process environment: everything else asks the settings.
ENVIRONMENT_READER = "core/settings.py"


def folder_of(module: str) -> str | None:
    """The source folder a dotted module lives in (`citygrid.stream.x` → stream), None if not ours."""
    if module != "citygrid" and not module.startswith("citygrid."):
        return None
    name = module.split(".")[1] if "." in module else ""
    return name if name in SOURCE_DIRS and name != "core" else "core"


def module_name(path: str) -> str:
    """The dotted module a file is installed as (core/x.py → citygrid.x, edge/a.py → citygrid.edge.a)."""
    parts = list(Path(path).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    top = [] if parts[0] == "core" else [parts[0]]
    return ".".join(["citygrid", *top, *parts[1:]])


def imported_modules(path: str, source: str) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) for every import statement in `source`, wherever it stands."""
    package = module_name(path).split(".")
    if not path.endswith("__init__.py"):
        package.pop()
    for node in ast.walk(ast.parse(source, filename=path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            # `from citygrid import edge` imports the subpackage, so each name counts on its own.
            for alias in node.names:
                yield node.lineno, f"{module}.{alias.name}" if module == "citygrid" else module


def import_violations(path: str, source: str) -> list[str]:
    """Every import in a source file (path relative to the repository) that breaks the layering."""
    folder = Path(path).parts[0]
    allowed = ALLOWED.get(folder)
    if allowed is None:
        return []
    found = []
    for line, module in imported_modules(path, source):
        target = folder_of(module)
        if target is not None and target not in allowed:
            found.append(f"{path}:{line} imports {module} ({folder} may import only "
                         f"{', '.join(sorted(allowed))})")
    return found


def long_functions(path: str, source: str, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """Every function or method in `source` longer than `limit` lines."""
    return [f"{path}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(ast.parse(source, filename=path))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.end_lineno - node.lineno + 1 > limit]


def environment_reads(path: str, source: str) -> list[str]:
    """Every use of os.environ / os.getenv (or os.putenv, os.environb) in `source`."""
    names = {"environ", "environb", "getenv", "putenv", "unsetenv"}
    tree = ast.parse(source, filename=path)
    os_aliases = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.Import)
                  for a in n.names if a.name == "os"}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            found += [f"{path}:{node.lineno} from os import {a.name}" for a in node.names if a.name in names]
        elif (isinstance(node, ast.Attribute) and node.attr in names
              and isinstance(node.value, ast.Name) and node.value.id in os_aliases):
            found.append(f"{path}:{node.lineno} {node.value.id}.{node.attr}")
    return found


def source_files() -> list[tuple[str, str]]:
    """(path relative to the repository, text) of every Python file in the source folders."""
    return [(p.relative_to(ROOT).as_posix(), p.read_text())
            for folder in SOURCE_DIRS for p in sorted((ROOT / folder).rglob("*.py"))]


def _report(problems: list[str], what: str) -> str:
    return f"{len(problems)} {what}:\n  " + "\n  ".join(problems)


def test_parts_core_and_dashboards_import_only_what_they_may() -> None:
    files = source_files()
    assert {Path(p).parts[0] for p, _ in files} == set(SOURCE_DIRS)
    problems = [v for path, text in files for v in import_violations(path, text)]
    assert not problems, _report(problems, "imports across the architecture's boundaries")


def test_no_function_is_longer_than_60_lines() -> None:
    problems = [f for path, text in source_files() for f in long_functions(path, text)]
    assert not problems, _report(problems, f"functions over {MAX_FUNCTION_LINES} lines")


def test_only_settings_reads_the_environment() -> None:
    problems = [r for path, text in source_files() if path != ENVIRONMENT_READER
                for r in environment_reads(path, text)]
    assert not problems, _report(problems, "reads of the process environment outside core/settings.py "
                                 "(add a settings field, or use citygrid.settings.child_env)")


# --- the checkers themselves: they must catch what the code before the fix did ---------------------

PRE_FIX = "2f974f4"  # the commit before the parts stopped importing each other


def _at_pre_fix(path: str) -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "show", f"{PRE_FIX}:{path}"], capture_output=True,
                              text=True, check=True, timeout=30).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"needs the git history ({PRE_FIX}:{path}): {exc}; clone without --depth")


def test_flags_the_ledger_importing_the_streams_trade_before_the_fix() -> None:
    problems = import_violations("ledger/settlement.py", _at_pre_fix("ledger/settlement.py"))
    assert any("imports citygrid.stream.market.orders" in p for p in problems), problems


def test_flags_core_importing_the_parts_before_the_fix() -> None:
    problems = import_violations("core/demo.py", _at_pre_fix("core/demo.py"))
    flagged = {p.split(" imports ")[1].split(" ")[0] for p in problems}
    assert {"citygrid.edge.fleet", "citygrid.ledger.chain", "citygrid.stream.ingest"} <= flagged, problems


def test_flags_the_settler_reading_the_environment_before_the_fix() -> None:
    reads = environment_reads("ledger/settlement.py", _at_pre_fix("ledger/settlement.py"))
    assert any("os.environ" in r for r in reads), reads


CROSSING = '''
import citygrid.settings
from citygrid.reading import Reading
from citygrid import devtools, topics
from . import chain
from ..stream import market


def later():
    import citygrid.edge.agent as agent
    from citygrid.sim.fleet import provision
    return agent, provision
'''


def test_import_checker_sees_every_form_of_import() -> None:
    problems = import_violations("ledger/settlement.py", CROSSING)
    assert [p.split(" (")[0] for p in problems] == [
        "ledger/settlement.py:4 imports citygrid.devtools",
        "ledger/settlement.py:6 imports citygrid.stream",
        "ledger/settlement.py:10 imports citygrid.edge.agent",
        "ledger/settlement.py:11 imports citygrid.sim.fleet",
    ]
    # Tooling may import the parts; core may not import even the tooling.
    assert import_violations("devtools/demo.py", CROSSING) == []
    assert any("citygrid.devtools" in p for p in import_violations("core/cli.py", CROSSING))
    # A module named in a string for lazy loading is not an import.
    assert import_violations("core/cli.py", 'GROUPS = {"edge": "citygrid.edge.cli"}\n') == []


def test_folder_and_module_names() -> None:
    assert folder_of("citygrid.stream.market.book") == "stream"
    assert folder_of("citygrid.settings") == "core" and folder_of("citygrid") == "core"
    assert folder_of("citygrid_extra") is None and folder_of("faust") is None
    assert module_name("core/settings.py") == "citygrid.settings"
    assert module_name("stream/traffic/__init__.py") == "citygrid.stream.traffic"


def test_length_and_environment_checkers() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(60))
    assert long_functions("sim/x.py", f"def ok():\n{body[: body.rindex(chr(10))]}\n") == []
    assert long_functions("sim/x.py", f"class C:\n  def long(self):\n{body}\n") == [
        "sim/x.py:2 long (61 lines)"]
    reads = environment_reads("edge/x.py", "import os as o\nfrom os import getenv\no.environ.get('A')\n")
    assert reads == ["edge/x.py:2 from os import getenv", "edge/x.py:3 o.environ"]
