"""The layers keep their direction: recognition's engine never imports the services (whatever
writes is a service), and the domain core imports nothing of the GraphQL or job layers."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The ASGI app and its GraphQL transports, and the CLI: the wiring at the top of app/.
WIRING = {"app/asgi.py", "app/graphql_http.py", "app/graphql_ws.py", "app/cli.py", "app/graphiql.py"}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_recognition_only_reads_and_decides():
    for path in (ROOT / "app" / "recognition").glob("*.py"):
        assert not {m for m in _imports(path) if m.startswith("app.services")}, path.name


def test_the_domain_core_does_not_import_the_layers_above_it():
    for path in (ROOT / "app").rglob("*.py"):
        if str(path.relative_to(ROOT)) in WIRING:
            continue
        above = {m for m in _imports(path) if m.split(".")[0] in ("schema", "resolvers", "jobs")}
        assert not above, path.relative_to(ROOT)
