"""The package arrows of DESIGN.md, checked on the source (issue 7 part 4).

Route modules (homeserver/client/, homeserver/admin/, and the modules of
federation/ and media/ that declare routes) parse a request, call a service and render: they reach no
store through the Services container and import nothing of homeserver.storage
at run time (a type named only for annotations, under TYPE_CHECKING, is fine).
media/ and federation/ never import homeserver/client/: what route packages
share lives in homeserver/request_context.py and homeserver/http.py.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The Services fields that are stores, kept there for wiring only.
STORE_FIELDS = frozenset({
    "db", "users", "devices", "events", "state", "rooms", "filters", "media", "registration", "user_directory",
})
# Names route modules give the Services container (or the federation context holding it).
SERVICES_NAMES = frozenset({"svc", "services"})
# Wiring modules: like homeserver/app.py, they build stores into services.
WIRING = frozenset({"federation/app.py", "media/app.py"})


def _declares_routes(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr == "RouteTableDef":
            return True
    return False


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).glob("*.py"))


def _route_modules() -> list[tuple[str, ast.Module]]:
    found = []
    for package in ("homeserver/client", "homeserver/admin", "federation", "media"):
        for path in _modules(package):
            name = path.relative_to(ROOT).as_posix()
            tree = ast.parse(path.read_text(), name)
            if name in WIRING:
                continue
            if package in ("homeserver/client", "homeserver/admin") or _declares_routes(tree):
                found.append((name, tree))
    return found


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    """ids of the nodes under `if TYPE_CHECKING:`, which never run."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for child in node.body:
                skipped.update(id(n) for n in ast.walk(child))
    return skipped


def _imported_modules(tree: ast.Module, runtime_only: bool) -> list[tuple[int, str]]:
    skipped = _type_checking_nodes(tree) if runtime_only else set()
    imports = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            imports.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imports.append((node.lineno, node.module))
    return imports


def _is_services(node: ast.expr) -> bool:
    """svc, services, x.services, services(request), request.app[SERVICES]."""
    if isinstance(node, ast.Name):
        return node.id in SERVICES_NAMES
    if isinstance(node, ast.Attribute):
        return node.attr == "services"
    if isinstance(node, ast.Call):
        return isinstance(node.func, ast.Name) and node.func.id == "services"
    if isinstance(node, ast.Subscript):
        return isinstance(node.slice, ast.Name) and node.slice.id == "SERVICES"
    return False


ROUTE_MODULES = _route_modules()


def test_route_modules_are_found():
    names = {name for name, _ in ROUTE_MODULES}
    assert {"homeserver/client/rooms.py", "media/routes.py", "federation/routes.py"} <= names


@pytest.mark.parametrize("name,tree", ROUTE_MODULES, ids=[name for name, _ in ROUTE_MODULES])
def test_route_module_reaches_no_store_through_services(name, tree):
    reached = [
        f"{name}:{node.lineno}: .{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in STORE_FIELDS and _is_services(node.value)
    ]
    assert reached == [], "route modules call services, not stores: " + ", ".join(reached)


@pytest.mark.parametrize("name,tree", ROUTE_MODULES, ids=[name for name, _ in ROUTE_MODULES])
def test_route_module_does_not_import_storage(name, tree):
    storage = [
        f"{name}:{line}: {module}" for line, module in _imported_modules(tree, runtime_only=True)
        if module == "homeserver.storage" or module.startswith("homeserver.storage.")
    ]
    assert storage == [], "SQL and stores stay below the services: " + ", ".join(storage)


# Statements as storage/ writes them (upper-case keywords), not prose that happens to say "select".
SQL = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\b.*\b(FROM|INTO|SET|AS)\b", re.S)


@pytest.mark.parametrize("name,tree", ROUTE_MODULES, ids=[name for name, _ in ROUTE_MODULES])
def test_route_module_holds_no_sql(name, tree):
    queries = [
        f"{name}:{node.lineno}" for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.match(node.value)
    ]
    assert queries == [], "SQL lives only in homeserver/storage/: " + ", ".join(queries)


@pytest.mark.parametrize("path", _modules("federation") + _modules("media"),
                         ids=lambda p: p.relative_to(ROOT).as_posix())
def test_media_and_federation_do_not_import_the_client_routes(path):
    tree = ast.parse(path.read_text())
    client = [
        f"{line}: {module}" for line, module in _imported_modules(tree, runtime_only=False)
        if module == "homeserver.client" or module.startswith("homeserver.client.")
    ]
    assert client == []


def test_the_checks_see_a_violation():
    """The checks above would fail on the shapes they look for (and not on a service call)."""
    tree = ast.parse(
        "from homeserver.storage.rooms import RoomStore\n"
        "async def route(request):\n"
        "    svc = services(request)\n"
        "    await svc.rooms.get_alias('#a:b')\n"
        "    await services(request).state.get_state(1)\n"
        "    await request.app[SERVICES].db.fetch('SELECT 1')\n"
        "    await fed.services.events.get_event('$e')\n"
        "    await svc.room_aliases.room_of('#a:b')\n"
    )
    reached = sorted(
        node.attr for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in STORE_FIELDS and _is_services(node.value)
    )
    assert reached == ["db", "events", "rooms", "state"]
    assert [m for _, m in _imported_modules(tree, runtime_only=True)] == ["homeserver.storage.rooms"]
    typed = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from homeserver.storage.devices import Device\n")
    assert [m for _, m in _imported_modules(typed, runtime_only=True)] == ["typing"]
    assert SQL.match("SELECT filter_json FROM filters WHERE user_id = $1")
    assert not SQL.match("Select a room to delete from the list")
