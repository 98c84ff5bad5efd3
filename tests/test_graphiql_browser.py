"""The GraphiQL page in a real headless Chromium: a token typed into the headers pane fetches the
schema, a query runs, a subscription receives an event, and the token stays in its tab only when
the user asks. Needs Debian's `chromium` (.ci/run installs it)."""

import shutil

import pytest

from tests.conftest import wait_for_subscriber

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH: install Debian's chromium to run the GraphiQL browser test"
)

# Chromium as root in a sandbox with no network but loopback.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
QUERY_EDITOR = ".graphiql-query-editor .CodeMirror"
HEADERS_EDITOR = ".graphiql-editor-tool .graphiql-editor:nth-child(2) .CodeMirror"
RESPONSE = ".graphiql-response"


@pytest.fixture
async def browser():
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


async def set_editor(page, selector: str, text: str) -> None:
    # CodeMirror 5 keeps its editor on the element; setValue fires the same change events as typing.
    await page.locator(selector).evaluate("(element, text) => element.CodeMirror.setValue(text)", text)
    # GraphiQL parses the document after a pause (it picks HTTP or WebSocket from it), as a person pauses.
    await page.wait_for_timeout(600)


async def open_graphiql(page, live_server: str) -> None:
    await page.goto(f"http://{live_server}/graphql")
    await page.locator(QUERY_EDITOR).wait_for()


async def test_graphiql_fetches_the_schema_once_a_token_is_typed_and_runs_queries_and_subscriptions(
    browser, live_server, admin_token, gql, runtime
):
    created = await gql('mutation { customerCreate(input: {name: "Ada"}) { customer { id } } }')
    customer_id = created["customerCreate"]["customer"]["id"]
    page = await browser.new_page()
    await open_graphiql(page, live_server)

    # Without a token the schema request is refused, readably.
    await page.locator(RESPONSE).get_by_text("A valid bearer token is required").wait_for()
    await set_editor(page, HEADERS_EDITOR, f'{{"Authorization": "Bearer {admin_token}"}}')

    # The schema is fetched again by itself: the docs list the root types.
    await page.get_by_label("Show Documentation Explorer").click()
    await page.locator(".graphiql-doc-explorer").get_by_text("subscription:").wait_for(timeout=10_000)

    await set_editor(page, QUERY_EDITOR, "{ me { name role } }")
    await page.get_by_label("Execute query (Ctrl-Enter)").click()
    await page.locator(RESPONSE).get_by_text('"ADMIN"', exact=True).wait_for()

    await set_editor(page, QUERY_EDITOR, f'subscription {{ customerUpdated(id: "{customer_id}") {{ name }} }}')
    await page.get_by_label("Execute query (Ctrl-Enter)").click()
    await wait_for_subscriber(runtime, "customerUpdated", 1)
    await gql(
        'mutation($id: ID!) { customerUpdate(input: {id: $id, name: "Ada Lovelace"}) { errors { code } } }',
        {"id": customer_id},
    )
    await page.locator(RESPONSE).get_by_text('"Ada Lovelace"', exact=True).wait_for(timeout=10_000)


async def test_graphiql_keeps_the_token_in_its_tab_only_when_asked(browser, live_server, admin_token):
    context = await browser.new_context()
    page = await context.new_page()
    await open_graphiql(page, live_server)
    await set_editor(page, HEADERS_EDITOR, f'{{"Authorization": "Bearer {admin_token}"}}')

    await page.reload()
    await page.locator(QUERY_EDITOR).wait_for()
    forgotten = await page.locator(HEADERS_EDITOR).evaluate("element => element.CodeMirror.getValue()")

    await page.get_by_label("Open settings dialog").click()
    await page.get_by_role("dialog").get_by_role("button", name="On", exact=True).click()
    await page.keyboard.press("Escape")
    await set_editor(page, HEADERS_EDITOR, f'{{"Authorization": "Bearer {admin_token}"}}')
    await page.reload()
    await page.locator(QUERY_EDITOR).wait_for()
    kept = await page.locator(HEADERS_EDITOR).evaluate("element => element.CodeMirror.getValue()")

    other_tab = await context.new_page()
    await open_graphiql(other_tab, live_server)
    other = await other_tab.locator(HEADERS_EDITOR).evaluate("element => element.CodeMirror.getValue()")
    in_local_storage = await page.evaluate("JSON.stringify(window.localStorage)")
    await context.close()

    assert admin_token not in forgotten and "<token>" in forgotten
    assert admin_token in kept
    assert admin_token not in other and admin_token not in in_local_storage
