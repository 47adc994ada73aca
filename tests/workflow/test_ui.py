"""`totes ui` in a real browser: the executions, an execution's graph, the pipeline's health
and the sales questions, after one `totes run` of a source holding a bad row.

The pages are driven in the system's Chromium (Debian's `chromium` package) through
Playwright, which brings its own driver and downloads no browser; without that browser
the tests are skipped. One deployment serves every test of the module. With
``TOTES_UI_SCREENSHOTS=docs/ui`` the tests also photograph each page into that folder.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from totes.db import connect, create_database, drop_database, row_counts, with_database
from totes.tables import WAREHOUSE_TABLES
from totes.warehouse.schema import init_warehouse
from totes_local.cli import main
from totes_local.runtime.assembly import CloudAssembly
from totes_local.runtime.postgres import PostgresServer
from totes_local.runtime.workflow import LocalWorkflow, new_execution_name, pair_id
from totes_local.stacks import StackOutputs, local_stack
from totes_local.ui.server import ConsoleServer

from .support import REPO_ROOT, Fault, faulty_assembly

BROWSER = Path(os.environ.get("TOTES_UI_BROWSER", "/usr/bin/chromium"))
SCREENSHOTS = os.environ.get("TOTES_UI_SCREENSHOTS")
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
#: The pages ask for news this often (ms) in the tests; a person's browser, every second.
POLL = 150
#: The bad row of the run: an agreed delivery date that is no day of the calendar.
BAD_DATE = "2024-02-30"


@dataclass(frozen=True)
class Deployment:
    """The module's one `totes run` and the console serving it."""

    url: str
    stack: StackOutputs
    source_dsn: str
    warehouse_dsn: str
    run: dict[str, Any]
    #: The data folder of the local service the deployment lives in.
    service_dir: Path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium, headless; the module is skipped where it or Playwright is missing."""
    if not BROWSER.is_file():
        pytest.skip(f"no Chromium at {BROWSER} (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(BROWSER))
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A new tab the size of a laptop's screen; closed after the test."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(20_000)
    yield opened
    context.close()


def _screenshot(page: Any, name: str, *, full_page: bool = True) -> None:
    """The page as the browser shows it, into ``TOTES_UI_SCREENSHOTS`` when that is set."""
    if SCREENSHOTS:
        folder = REPO_ROOT / SCREENSHOTS
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"{name}.png"), full_page=full_page)


@pytest.fixture(scope="module")
def deployment(
    browser: Any,
    pg_server: PostgresServer,
    small_source_template: str,
    cloud_assembly: CloudAssembly,
    service_dir: Path,
) -> Iterator[Deployment]:
    """`totes run` of a small source with one bad order, and the console over it."""
    names = [f"totes_ui_{_WORKER}_{purpose}" for purpose in ("source", "warehouse")]
    for name in names:
        drop_database(pg_server.admin_dsn, name)
    create_database(pg_server.admin_dsn, names[0], template=small_source_template)
    create_database(pg_server.admin_dsn, names[1])
    source_dsn, warehouse_dsn = (with_database(pg_server.admin_dsn, name) for name in names)
    with connect(warehouse_dsn) as conn:
        init_warehouse(conn)
    with connect(source_dsn) as conn:
        conn.execute(
            "UPDATE sales_order SET agreed_delivery_date = %s, last_updated = now() "
            "WHERE sales_order_id = 1",
            (BAD_DATE,),
        )
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = main(
            [
                "run",
                *("--source-dsn", source_dsn, "--warehouse-dsn", warehouse_dsn),
                *("--data-dir", str(service_dir), "--cdk-out", str(cloud_assembly.directory)),
                *("--runs", "1", "--json"),
            ]
        )
    assert status == 0, printed.getvalue()
    (line,) = printed.getvalue().splitlines()
    stack = local_stack(
        service_dir, f"{cloud_assembly.stack_name}-{pair_id(source_dsn, warehouse_dsn)}"
    )
    try:
        with ConsoleServer(stack, port=0, project=REPO_ROOT) as server:
            yield Deployment(
                server.url, stack, source_dsn, warehouse_dsn, json.loads(line), service_dir
            )
    finally:
        for name in names:
            drop_database(pg_server.admin_dsn, name)


def _open(page: Any, deployment: Deployment, path: str) -> None:
    separator = "&" if "?" in path else "?"
    page.goto(f"{deployment.url.rstrip('/')}{path}{separator}poll={POLL}")


def test_the_executions_page_lists_the_run_with_its_figures(
    deployment: Deployment, page: Any
) -> None:
    # Given a `totes run` that rejected the bad order
    run = deployment.run
    moved = sum(counts.get("loaded", 0) for counts in run["tables"].values())

    # When the executions page is opened
    _open(page, deployment, "/executions")
    row = page.locator(f'tr[data-execution="{run["execution"]}"]')

    # Then the run is listed, succeeded, with the rows it moved and the one it rejected
    assert row.get_attribute("data-status") == "SUCCEEDED"
    assert row.locator('[data-column="rows-moved"]').inner_text() == f"{moved:,}"
    assert row.locator('[data-column="rows-rejected"]').inner_text() == "1"
    # And the console is served on the loopback address only
    assert deployment.url.startswith("http://127.0.0.1:")


def test_the_graph_shows_every_state_with_its_outcome_and_load_facts_output(
    deployment: Deployment, page: Any
) -> None:
    # Given the run's execution
    run = deployment.run

    # When its page is opened
    _open(page, deployment, f"/executions/{run['execution']}")
    page.wait_for_selector("#graph svg [data-state]")

    # Then every state of the definition is drawn, each with the outcome the run gave it
    drawn = dict(
        page.eval_on_selector_all(
            "#graph [data-state]", "nodes => nodes.map(n => [n.dataset.state, n.dataset.outcome])"
        )
    )
    assert drawn == run["states"]
    assert drawn["LoadFacts"] == "succeeded"
    assert drawn["NotifyFailure"] == "not run"

    # When LoadFacts is selected (on its title: its items lie inside it)
    page.click('#graph [data-state="LoadFacts"]', position={"x": 40, "y": 12})

    # Then its output is shown, with its items per fact table
    panel = page.locator("#state")
    assert panel.locator("[data-selected-state]").inner_text() == "LoadFacts"
    shown = panel.locator("pre.output").first.inner_text()
    # (the JSON as it starts: the panel shows the first 20,000 characters of a longer one)
    assert shown.startswith(f'{{\n  "run_id": "{run["run_id"]}",')
    items = panel.locator("tr[data-item]").evaluate_all("rows => rows.map(r => r.dataset.item)")
    assert sorted(items) == ["fact_payment", "fact_purchase_order", "fact_sales_order"]
    # And the event history is listed below, from the start to the execution's success
    events = page.locator("table.events tbody tr")
    assert events.first.inner_text().startswith("1\tExecutionStarted")
    assert "ExecutionSucceeded" in events.last.inner_text()
    _screenshot(page, "execution-graph", full_page=False)


def _warehouse_rows(dsn: str, statement: str) -> list[list[str]]:
    with connect(dsn) as conn:
        rows = conn.execute(statement).fetchall()  # type: ignore[arg-type]
    return [["" if value is None else str(value) for value in row] for row in rows]


def _shown_figures(page: Any) -> dict[str, tuple[str, list[list[str]]]]:
    """Each chart's SQL and the figures its table shows."""
    return {
        key: (sql, rows)
        for key, sql, rows in page.eval_on_selector_all(
            "figure[data-chart]",
            """charts => charts.map(c => [c.dataset.chart, c.querySelector('pre.sql').textContent,
                [...c.querySelectorAll('table.figures tbody tr')].map(
                    r => [...r.cells].map(td => td.textContent))])""",
        )
    }


def test_the_sales_figures_equal_the_same_sql_run_in_the_warehouse(
    deployment: Deployment, page: Any
) -> None:
    # Given the lake and the warehouse after the run
    # When the sales page is opened
    _open(page, deployment, "/sales")
    page.wait_for_selector("figure[data-chart] table.figures", state="attached")
    charts = _shown_figures(page)

    # Then it answers each of the client's questions, with its SQL
    assert list(charts) == [
        "revenue-by-month",
        "by-design",
        "by-place",
        "by-staff",
        "purchases-and-payments",
    ]
    # And each figure is what that SQL finds in the warehouse
    for key, (statement, rows) in charts.items():
        assert rows, key
        assert rows == _warehouse_rows(deployment.warehouse_dsn, statement), key
    _screenshot(page, "sales")

    # When a chart's SQL is copied
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    chart = page.locator('figure[data-chart="by-staff"]')
    chart.locator("summary", has_text="SQL").click()
    chart.locator("button.copy").click()
    # Then the clipboard holds that statement
    chart.locator("button.copy", has_text="Copied").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == charts["by-staff"][0]

    # When the page is narrowed to one currency from a later day
    total = sum(Decimal(row[4]) for row in charts["revenue-by-month"][1])
    page.select_option("select[name=currency]", "GBP")
    page.fill("input[name=from]", "2023-06-01")
    page.click("form#filters button[type=submit]")
    page.wait_for_url("**/sales?*currency=GBP*")
    page.wait_for_selector("#charts:not([aria-busy])")
    narrowed = _shown_figures(page)

    # Then every figure is of that currency and period, and still the warehouse's own
    months = narrowed["revenue-by-month"][1]
    assert {row[2] for row in months} == {"GBP"}
    assert min((int(row[0]), int(row[1])) for row in months) >= (2023, 6)
    assert sum(Decimal(row[4]) for row in months) < total
    for key, (statement, rows) in narrowed.items():
        assert "DATE '2023-06-01'" in statement, key
        assert rows == _warehouse_rows(deployment.warehouse_dsn, statement), key


def test_a_link_with_markup_in_its_filters_shows_it_as_text_and_runs_nothing(
    deployment: Deployment, page: Any
) -> None:
    # Given a link to the sales page whose date filter carries an attribute and a script
    planted = '" autofocus onfocus="window.planted = 1" x="'
    # When it is opened
    _open(page, deployment, f"/sales?from={urllib.parse.quote(planted)}")
    page.wait_for_selector("form#filters")
    # Then the page holds no attribute from the link, and nothing of it ran
    assert page.locator("[onfocus], [x]").count() == 0
    assert page.evaluate("window.planted") is None


def test_a_request_naming_another_host_is_refused(deployment: Deployment) -> None:
    # Given the console of the run
    # When a page of another site, whose name was pointed at this machine, asks it
    request = urllib.request.Request(  # noqa: S310 (a local URL)
        f"{deployment.url.rstrip('/')}/api/executions", headers={"Host": "attacker.example:8321"}
    )
    # Then it is refused before anything is read
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)  # noqa: S310  # nosec B310
    assert refused.value.code == 400


def test_the_health_page_shows_the_tables_and_the_rejected_row(
    deployment: Deployment, page: Any
) -> None:
    # Given the run, which kept the bad order aside
    with connect(deployment.warehouse_dsn) as conn:
        counts = row_counts(conn, WAREHOUSE_TABLES)

    # When the health page is opened
    _open(page, deployment, "/health")
    page.wait_for_selector("#tables")

    # Then every warehouse table is listed with the rows the warehouse holds
    shown = dict(
        page.eval_on_selector_all(
            "#tables tr[data-table]",
            "rows => rows.map(r => [r.dataset.table, "
            "r.querySelector('[data-column=rows]').textContent])",
        )
    )
    assert shown == {table: f"{counts[table]:,}" for table in WAREHOUSE_TABLES}
    assert (
        page.locator('tr[data-table="fact_sales_order"] [data-column=rejected]').inner_text() == "1"
    )
    # And the quarantined row, with its reason, and the finding of the last execution
    quarantine = page.locator("#quarantine").inner_text()
    assert "sales_order_id 1" in quarantine
    assert f"'{BAD_DATE}' is not a date: February 2024 has 29 days" in quarantine
    assert "1 row rejected" in page.locator("#findings").inner_text()
    # And the charts over the executions
    assert page.locator(".charts svg.chart").count() == 3


def test_a_running_execution_changes_on_its_page_as_it_runs_and_its_alert_is_shown(
    deployment: Deployment, page: Any, cloud_assembly: CloudAssembly, tmp_path: Path
) -> None:
    # Given the deployment with a load of fact_payment that takes its time, then fails
    fault = Fault(
        "LoadFact",
        "load_target",
        "fact_payment",
        "_fault_time.sleep(2.5)\nraise InjectedFaultError('the warehouse went away')",
    )
    slow = faulty_assembly(cloud_assembly, fault, tmp_path / "slow-cdk.out")
    workflow = LocalWorkflow(
        slow,
        source_dsn=deployment.source_dsn,
        warehouse_dsn=deployment.warehouse_dsn,
        data_dir=deployment.service_dir,
    )
    workflow.start()
    name = new_execution_name()

    _open(page, deployment, "/executions")
    page.wait_for_selector("table.list")

    # When the schedule starts an execution while the executions page is open
    workflow.client("stepfunctions").start_execution(
        stateMachineArn=workflow.state_machine_arn, name=name, input="{}"
    )

    # Then the page lists it, running, without a reload
    page.wait_for_selector(f'tr[data-execution="{name}"][data-status="RUNNING"]')

    # When it is opened
    page.click(f'tr[data-execution="{name}"] a')
    page.wait_for_url(f"**/executions/{name}")
    page.evaluate("window.openedOnce = true")

    # Then its page shows the execution running, a state at work
    page.wait_for_selector('#summary [data-status="RUNNING"]')
    page.wait_for_selector('#graph [data-outcome="running"]')
    _screenshot(page, "execution-running", full_page=False)
    # And, without a reload, its end: the load failed, the failure path ran
    page.wait_for_selector('#summary [data-status="FAILED"]', timeout=60_000)
    page.wait_for_selector('#graph [data-state="NotifyFailure"][data-outcome="succeeded"]')
    assert page.evaluate("window.openedOnce") is True
    assert page.get_attribute('#graph [data-state="LoadFact"]', "data-outcome") == "failed"
    assert "InjectedFaultError" in page.locator("#summary").inner_text()
    # And selecting the failed task shows its error for the table it failed on
    page.click('#graph [data-state="LoadFact"]')
    failed_item = page.locator('#state details[data-item="fact_payment"]').inner_text()
    assert "InjectedFaultError" in failed_item
    assert "the warehouse went away" in failed_item
    _screenshot(page, "execution-failed", full_page=False)

    # When the executions page is opened again
    _open(page, deployment, "/executions")
    # Then the failure is listed, newest first, with the state it failed in
    newest = page.locator("tr[data-execution]").first
    assert newest.get_attribute("data-status") == "FAILED"
    assert "in LoadFact (fact_payment)" in newest.inner_text()
    _screenshot(page, "executions")

    # When the health page is opened
    _open(page, deployment, "/health")
    page.wait_for_selector("article.email")

    # Then the alert e-mail the topic received is there, subject and body
    email = page.locator("article.email").first.inner_text()
    assert "LoadFact failed for fact_payment" in email
    assert name in email
    _screenshot(page, "health")


def test_totes_ui_prints_its_address_on_the_loopback_and_serves_the_console(
    deployment: Deployment,
) -> None:
    # Given the local deployment that `totes run` left
    # When `totes ui` is started on any free port
    process = subprocess.Popen(  # noqa: S603 (this interpreter running the totes command)
        [
            *(sys.executable, "-m", "totes_local.cli", "ui", "--port", "0"),
            *("--data-dir", str(deployment.service_dir)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        # Then it says where the console is: on 127.0.0.1
        url = line.split(" at ", 1)[1].split()[0]
        assert url.startswith("http://127.0.0.1:"), line
        # And the console answers there, its pages and their assets alike
        with urllib.request.urlopen(f"{url}executions", timeout=10) as answer:  # noqa: S310
            assert b"/assets/ui.js" in answer.read()
        with urllib.request.urlopen(f"{url}assets/mermaid.min.js", timeout=10) as answer:  # noqa: S310
            assert answer.status == 200
    finally:
        # And Ctrl+C stops it
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 130
        if process.stdout is not None:
            process.stdout.close()


def test_the_cli_imports_the_console_only_for_totes_ui() -> None:
    # Given a fresh interpreter
    # When the `totes` command's module is imported (as `totes run` does)
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, totes_local.cli; print(any(m.startswith('totes_local.ui') "
            "for m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    # Then none of the console is loaded: it costs `make run` nothing
    assert completed.stdout.strip() == "False"
