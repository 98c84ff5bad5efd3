"""Self-hosted GraphiQL: the page and its vendored browser assets, so it works offline.

Usage in the app factory (with strawberry's own IDE disabled: graphql_ide=None):

    Mount(ASSETS_PATH, app=graphiql_assets_app(), name="graphiql-assets")
    # and wherever the IDE is served (e.g. a GET on /graphql from a browser):
    HTMLResponse(graphiql_html(endpoint="/graphql"))

The assets (GraphiQL 3, React 18, graphql-ws 5 UMD builds) live in app/static/graphiql/;
versions and licenses are listed in LICENSES.md there.
"""

from __future__ import annotations

import json
from pathlib import Path

from starlette.staticfiles import StaticFiles

ASSETS_PATH = "/graphiql-assets"
ASSETS_DIR = Path(__file__).parent / "static" / "graphiql"

PLACEHOLDER_HEADERS = '{\n  "Authorization": "Bearer <token>"\n}'


def graphiql_assets_app() -> StaticFiles:
    """Static files app for the vendored GraphiQL assets; mount it at ASSETS_PATH."""
    return StaticFiles(directory=ASSETS_DIR)


def _js(value: object) -> str:
    # JSON is valid JS; escape <, >, & so a value can never close the <script> element.
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Casegraph GraphiQL</title>
  <link rel="stylesheet" href="{assets}/graphiql.min.css">
  <style>html, body, #graphiql {{ height: 100%; margin: 0; }}</style>
</head>
<body>
  <div id="graphiql">Loading GraphiQL&hellip;</div>
  <script src="{assets}/react.production.min.js"></script>
  <script src="{assets}/react-dom.production.min.js"></script>
  <script src="{assets}/graphql-ws.min.js"></script>
  <script src="{assets}/graphiql.min.js"></script>
  <script>
    const ENDPOINT = {endpoint};
    const PLACEHOLDER_HEADERS = {placeholder};

    // Same path as the HTTP endpoint, over ws:// or wss:// to match the page.
    const wsUrl = new URL(ENDPOINT, window.location.href);
    wsUrl.protocol = wsUrl.protocol === "https:" ? "wss:" : "ws:";

    // Token from the headers editor's "Authorization: Bearer <token>"; null if unset/placeholder.
    function bearerToken(headers) {{
      for (const [name, value] of Object.entries(headers || {{}})) {{
        if (name.toLowerCase() !== "authorization" || typeof value !== "string") continue;
        const match = /^bearer\\s+(.+)$/i.exec(value.trim());
        return match && match[1] !== "<token>" ? match[1].trim() : null;
      }}
      return null;
    }}

    // GraphiQL hands the parsed headers editor to the fetcher on every run, so the token is read
    // at run time. Subscriptions go over graphql-ws, which cannot send HTTP headers: the token is
    // sent as connection_params {{"token": ...}} instead. A new token gets a new (lazy) ws client;
    // the old one closes its socket once its subscriptions end.
    let current = {{ token: undefined, fetcher: null }};
    function fetcherFor(token) {{
      if (!current.fetcher || current.token !== token) {{
        const wsClient = graphqlWs.createClient({{
          url: wsUrl.href,
          connectionParams: token ? {{ token }} : {{}},
        }});
        current = {{ token, fetcher: GraphiQL.createFetcher({{ url: ENDPOINT, wsClient }}) }};
      }}
      return current.fetcher;
    }}
    function fetcher(params, opts) {{
      opts = opts || {{}};
      const token = bearerToken(opts.headers);
      let headers = opts.headers;
      if (!token && headers) {{
        // Never send the untouched placeholder: it would fail auth even for public queries.
        headers = Object.fromEntries(
          Object.entries(headers).filter(([name]) => name.toLowerCase() !== "authorization"));
      }}
      return fetcherFor(token)(params, {{ ...opts, headers }});
    }}

    // A token belongs to one browser tab: the tabs (with their headers, when "Persist headers" is
    // switched on in GraphiQL's settings) live in sessionStorage; query history stays in localStorage.
    const PER_TAB = new Set(["graphiql:tabState", "graphiql:headers", "graphiql:shouldPersistHeaders"]);
    const storeFor = (key) => (PER_TAB.has(key) ? window.sessionStorage : window.localStorage);
    const ownKeys = (store) => Object.keys(store).filter((key) => key.startsWith("graphiql:"));
    const storage = {{
      getItem: (key) => storeFor(key).getItem(key),
      setItem: (key, value) => storeFor(key).setItem(key, value),
      removeItem: (key) => storeFor(key).removeItem(key),
      clear: () => {{
        for (const store of [localStorage, sessionStorage]) for (const key of ownKeys(store)) store.removeItem(key);
      }},
      get length() {{ return ownKeys(localStorage).length + ownKeys(sessionStorage).length; }},
    }};

    // Tabs restored without their headers get the placeholder back, so the hint stays visible.
    try {{
      const saved = JSON.parse(sessionStorage.getItem("graphiql:tabState"));
      if (saved && Array.isArray(saved.tabs)) {{
        for (const tab of saved.tabs) if (!tab.headers) tab.headers = PLACEHOLDER_HEADERS;
        sessionStorage.setItem("graphiql:tabState", JSON.stringify(saved));
      }}
    }} catch (e) {{ /* nothing saved yet, or storage unavailable */ }}

    // GraphiQL fetches the schema again whenever it is given a new fetcher, so a new fetcher is
    // made each time the token in the headers pane changes (once typing pauses).
    function App() {{
      const [token, setToken] = React.useState(undefined);
      const typing = React.useRef(null);
      const tokenFetcher = React.useMemo(() => (params, opts) => fetcher(params, opts), [token]);
      function onEditHeaders(text) {{
        clearTimeout(typing.current);
        typing.current = setTimeout(() => {{
          try {{ setToken(bearerToken(JSON.parse(text))); }} catch (e) {{ /* not JSON yet */ }}
        }}, 400);
      }}
      return React.createElement(GraphiQL, {{
        fetcher: tokenFetcher,
        onEditHeaders,
        storage,
        isHeadersEditorEnabled: true,
        defaultHeaders: PLACEHOLDER_HEADERS,
        defaultEditorToolsVisibility: "headers",
      }});
    }}

    ReactDOM.createRoot(document.getElementById("graphiql")).render(React.createElement(App));
  </script>
</body>
</html>
"""


def graphiql_html(*, endpoint: str = "/graphql") -> str:
    """Complete GraphiQL page for `endpoint`, loading only assets served from ASSETS_PATH."""
    return _PAGE.format(assets=ASSETS_PATH, endpoint=_js(endpoint), placeholder=_js(PLACEHOLDER_HEADERS))
