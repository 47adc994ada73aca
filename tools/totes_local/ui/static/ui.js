// The console's pages: each fetches its JSON from the server and draws it; pages about
// something that may still change (executions, health) ask again every few seconds.
"use strict";

const main = document.querySelector("main");
const params = new URLSearchParams(location.search);
// Tests ask more often than a person needs to.
const POLL_MS = Number(params.get("poll")) || 1000;

// Text made safe for HTML, in an element or in a quoted attribute alike.
function h(text) {
  const span = document.createElement("span");
  span.textContent = text === null || text === undefined ? "" : String(text);
  return span.innerHTML.replaceAll('"', "&quot;").replaceAll("'", "&#39;");
}

function number(value) {
  if (value === null || value === undefined || value === "") return "";
  return Number(value).toLocaleString("en-GB");
}

function plural(count, noun) {
  return `${number(count)} ${count === 1 ? noun : `${noun}s`}`;
}

function seconds(value) {
  if (value === null || value === undefined) return "";
  if (value < 60) return `${value.toFixed(1)} s`;
  if (value < 3600) return `${Math.floor(value / 60)} min ${String(Math.floor(value % 60)).padStart(2, "0")} s`;
  if (value < 86400) return `${Math.floor(value / 3600)} h ${String(Math.floor((value % 3600) / 60)).padStart(2, "0")} min`;
  return `${Math.floor(value / 86400)} days ${Math.floor((value % 86400) / 3600)} h`;
}

function when(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "medium" });
}

function badge(status) {
  return `<span class="badge ${h(status).toLowerCase().replace(/ /g, "-")}">${h(status)}</span>`;
}

async function getJson(url) {
  const response = await fetch(url, { cache: "no-store" });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function showError(error) {
  let box = document.getElementById("problem");
  if (!box) {
    box = document.createElement("p");
    box.id = "problem";
    box.className = "problem";
    main.prepend(box);
  }
  box.textContent = error ? `Could not read the deployment: ${error.message}` : "";
  box.hidden = !error;
}

// Calls draw() now and, when `every` (ms) is given, again that often while it answers
// true (still changing) or fails (the service may come back).
async function keepDrawing(draw, every) {
  let again = true;
  try {
    again = await draw();
    showError(null);
  } catch (error) {
    showError(error);
  }
  if (again && every > 0) setTimeout(() => keepDrawing(draw, every), every);
}

function table(columns, rows, attributes = "") {
  const head = columns.map((column) => `<th>${h(column)}</th>`).join("");
  return `<table ${attributes}><thead><tr>${head}</tr></thead><tbody>${rows.join("")}</tbody></table>`;
}

// -- Executions ---------------------------------------------------------------------------

function executionsPage() {
  main.innerHTML = `<h1>Executions</h1>
    <p class="hint">Every execution of the state machine, newest first. A running one updates as it goes.</p>
    <div id="executions"></div>`;
  const every = params.get("limit") === "all";
  keepDrawing(async () => {
    const answer = await getJson(`/api/executions${every ? "?limit=all" : ""}`);
    const executions = answer.executions;
    const rows = executions.map(
      (e) => `<tr data-execution="${h(e.name)}" data-status="${h(e.status)}">
        <td><a href="/executions/${encodeURIComponent(e.name)}">${h(e.name)}</a></td>
        <td>${badge(e.status)}${e.failed_state ? ` <small>in ${h(e.failed_state)}${e.failed_item ? ` (${h(e.failed_item)})` : ""}</small>` : ""}</td>
        <td>${when(e.started)}</td>
        <td class="n">${seconds(e.duration_s)}</td>
        <td class="n">${number(e.passes)}</td>
        <td class="n" data-column="rows-moved">${number(e.rows_moved)}</td>
        <td class="n ${e.rows_rejected ? "warn" : ""}" data-column="rows-rejected">${number(e.rows_rejected)}</td>
      </tr>`,
    );
    document.getElementById("executions").innerHTML = executions.length
      ? table(["execution", "status", "started", "duration", "passes", "rows moved", "rows rejected"], rows, 'class="list"')
      : "<p>No execution yet: <code>totes run</code> starts one.</p>";
    if (answer.total > executions.length) {
      document.getElementById("executions").insertAdjacentHTML(
        "beforeend",
        `<p>The newest ${number(executions.length)} of ${number(answer.total)}: <a href="/executions?limit=all">show every one</a></p>`,
      );
    }
    return true;
  }, POLL_MS);
}

// -- One execution: its graph, the selected state, the event history ------------------------

const OUTCOME_CLASS = { succeeded: "succeeded", failed: "failed", "not run": "not-run" };

function executionPage(name) {
  main.innerHTML = `<h1>Execution <code>${h(name)}</code></h1>
    <div id="summary"></div>
    <div class="graph-and-state">
      <figure id="graph" aria-label="state machine graph"></figure>
      <aside id="state"><p class="hint">Select a state in the graph to see its input, output or error.</p></aside>
    </div>
    <p class="legend"><span class="badge succeeded">succeeded</span> <span class="badge failed">failed</span>
      <span class="badge not-run">not run</span> <span class="badge running">running</span></p>
    <h2>Event history</h2><div id="events"></div>`;
  let drawn = "";
  let selected = null;
  let detail = null;

  const showState = (state) => {
    selected = state;
    const info = detail.states[state];
    const panel = document.getElementById("state");
    if (!info) return;
    document.querySelectorAll("#graph [data-state]").forEach((node) => {
      node.classList.toggle("selected", node.dataset.state === state);
    });
    const entries = info.entries;
    const items = entries.length > 1 || (entries[0] && entries[0].item);
    let body = `<h2 data-selected-state="${h(state)}">${h(state)}</h2>
      <p>${h(info.type)} · ${badge(info.running ? "running" : info.outcome)}${info.seconds !== null ? ` · ${seconds(info.seconds)}` : ""}</p>`;
    if (!entries.length) body += "<p>Not entered in this execution.</p>";
    if (info.items.length) {
      body += `<h3>Items</h3>${table(
        ["table", "outcome", "seconds", "attempts"],
        info.items.map((item) => `<tr data-item="${h(item.item)}"><td>${h(item.item || item.state)}</td><td>${badge(item.outcome)}${item.error ? ` <small>${h(item.error)}</small>` : ""}</td>
          <td class="n">${item.duration_s === null ? "" : item.duration_s.toFixed(2)}</td><td class="n">${item.attempts}</td></tr>`),
        'class="list items"',
      )}`;
    }
    entries.forEach((entry, index) => {
      const title = items ? `${entry.item || state} (entry ${index + 1})` : "";
      body += `<details ${entries.length === 1 || entry.outcome === "failed" ? "open" : ""} class="entry" data-item="${h(entry.item || "")}">
        <summary>${h(title || "this state")} ${badge(entry.outcome)} ${seconds(entry.duration_s)}${entry.attempts > 1 ? ` · ${entry.attempts} attempts` : ""}</summary>
        ${entry.error ? `<h3>Error</h3><pre class="error">${h(entry.error)}${entry.message ? `: ${h(entry.message)}` : ""}</pre>
          ${entry.cause ? `<details><summary>Cause, as the service reported it</summary><pre>${h(entry.cause)}</pre></details>` : ""}` : ""}
        ${entry.output !== null ? `<h3>Output</h3><pre class="output">${h(entry.output)}</pre>` : ""}
        <h3>Input</h3><pre>${h(entry.input)}</pre>
      </details>`;
    });
    panel.innerHTML = body;
  };

  const drawGraph = async () => {
    const figure = document.getElementById("graph");
    if (!window.mermaid) {
      // No mermaid installed: the states, still coloured and selectable, as a list.
      figure.innerHTML = `<ul class="states">${Object.entries(detail.states)
        .map(([state, info]) => `<li><button data-state="${h(state)}" data-outcome="${h(info.outcome)}" class="${OUTCOME_CLASS[info.outcome]}">${h(state)}</button></li>`)
        .join("")}</ul>`;
    } else {
      window.mermaid.initialize({ startOnLoad: false, securityLevel: "strict", flowchart: { htmlLabels: true }, maxTextSize: 200000 });
      const { svg } = await window.mermaid.render("execution-graph", detail.mermaid);
      figure.innerHTML = svg;
      const byNode = Object.fromEntries(Object.entries(detail.node_ids).map(([state, node]) => [node, state]));
      figure.querySelectorAll("g.node[id], g.cluster[id]").forEach((element) => {
        const match = element.id.match(/(?:^|-)(s\d+)(?:-\d+)?$/);
        const state = match && byNode[match[1]];
        if (!state) return;
        element.dataset.state = state;
      });
    }
    figure.querySelectorAll("[data-state]").forEach((element) => {
      const info = detail.states[element.dataset.state];
      element.dataset.outcome = info.running ? "running" : info.outcome;
      element.classList.toggle("running", info.running);
      element.setAttribute("role", "button");
      element.setAttribute("tabindex", "0");
      element.setAttribute("aria-label", `${element.dataset.state}: ${element.dataset.outcome}`);
      const choose = (event) => {
        event.stopPropagation();
        showState(element.dataset.state);
      };
      element.addEventListener("click", choose);
      element.addEventListener("keydown", (event) => event.key === "Enter" && choose(event));
    });
  };

  keepDrawing(async () => {
    detail = await getJson(`/api/executions/${encodeURIComponent(name)}`);
    const s = detail.summary;
    document.getElementById("summary").innerHTML = `<p class="facts" data-status="${h(s.status)}">
      ${badge(s.status)} started ${when(s.started)} · ${seconds(s.duration_s)} · ${s.passes === 1 ? "1 pass" : `${number(s.passes)} passes`}
      · ${plural(s.rows_moved, "row")} moved · ${plural(s.rows_rejected, "row")} rejected
      ${s.caught_up ? "· caught up" : ""}</p>
      ${s.error ? `<p class="problem">${h(s.failed_state || "")} ${s.failed_item ? `(${h(s.failed_item)})` : ""}: <strong>${h(s.error)}</strong> ${h(detail.cause || "")}</p>` : ""}
      ${detail.findings.length ? `<ul class="findings">${detail.findings.map((f) => `<li>${h(f)}</li>`).join("")}</ul>` : ""}`;
    const shape = detail.mermaid + JSON.stringify(Object.values(detail.states).map((state) => state.running));
    if (shape !== drawn) {
      drawn = shape;
      await drawGraph();
    }
    if (selected) showState(selected);
    document.getElementById("events").innerHTML = table(
      ["#", "type", "state", "elapsed", "time", "detail"],
      detail.events.map(
        (e) => `<tr class="${/Failed|TimedOut|Aborted/.test(e.type) ? "failed-event" : ""}"><td class="n">${e.id}</td><td>${h(e.type)}</td><td>${h(e.state)}</td>
          <td class="n">${number(e.elapsed_ms)} ms</td><td>${when(e.time)}</td><td>${h(e.detail)}</td></tr>`,
      ),
      'class="list events"',
    );
    return s.status === "RUNNING";
  }, POLL_MS);
}

// -- Pipeline health ----------------------------------------------------------------------

function healthPage() {
  main.innerHTML = `<h1>Pipeline health</h1><div id="health"></div>`;
  keepDrawing(async () => {
    const health = await getJson("/api/health");
    const last = health.last_execution;
    const tables = health.tables.map(
      (t) => `<tr data-table="${h(t.table)}"><td>${h(t.table)}</td>
        <td class="n">${t.freshness_lag_s === null ? "" : seconds(t.freshness_lag_s)}</td>
        <td class="n" data-column="rows">${number(t.rows)}</td>
        <td class="n">${!health.backlog_from ? "" : t.backlog_rows || t.backlog_files ? `${number(t.backlog_rows)} rows${t.backlog_files ? `, ${number(t.backlog_files)} files` : ""}` : "none"}</td>
        <td>${when(t.last_load)}</td>
        <td class="n ${t.rows_rejected ? "warn" : ""}" data-column="rejected">${number(t.rows_rejected)}</td>
        <td class="n">${t.files_waiting ? `${number(t.files_waiting)} files` : ""}</td></tr>`,
    );
    const backlog = Object.entries(health.source_backlog);
    const emails = health.alert_emails;
    document.getElementById("health").innerHTML = `
      <section><h2>Tables</h2>
        <p class="hint">Freshness lag: now minus the newest <code>last_updated</code> in the warehouse (fact tables).
        Backlog and waiting files: what ${health.backlog_from ? `the last successful execution (${h(health.backlog_from)}) left` : "no successful execution has told yet"}.
        Rejected: rows kept in the quarantine.</p>
        ${table(["table", "freshness lag", "rows in the warehouse", "backlog", "last load", "rows rejected", "waiting"], tables, 'class="list" id="tables"')}
        ${backlog.length ? `<p class="warn">Source rows not yet ingested: ${backlog.map(([t, n]) => `${h(t)} ${number(n)}`).join(", ")}</p>` : ""}
      </section>
      <section><h2>Last execution</h2>
        ${last ? `<p><a href="/executions/${encodeURIComponent(last.name)}">${h(last.name)}</a> ${badge(last.status)} ${when(last.started)} · ${seconds(last.duration_s)}</p>` : "<p>No execution yet.</p>"}
        <h3>Findings</h3>
        ${health.findings.length ? `<ul class="findings" id="findings">${health.findings.map((f) => `<li class="${f.needs_attention ? "warn" : ""}">${h(f.table)} (${h(f.stage)}): ${h(f.text)}</li>`).join("")}</ul>` : "<p>Nothing found: no row rejected, no drift.</p>"}
      </section>
      <section class="charts"><h2>The last ${health.executions.length === 1 ? "execution" : `${health.executions.length} executions`}</h2>
        ${health.charts.map((c) => `<figure class="card"><figcaption><strong>${h(c.title)}</strong> ${h(c.shows)}</figcaption>${c.svg}</figure>`).join("")}
      </section>
      <section><h2>Quarantined rows</h2>
        <p class="hint">What <code>totes rejects</code> lists: rows kept aside, with the reason.</p>
        ${health.quarantine.length ? table(["table", "stage", "run", "source row", "reason"], health.quarantine.map((r) => `<tr><td>${h(r.table)}</td><td>${h(r.stage)}</td><td><small>${h(r.run_id)}</small></td><td>${h(r.source_key)}</td><td>${h(r.reason)}</td></tr>`), 'class="list" id="quarantine"') : "<p>None.</p>"}
      </section>
      <section><h2>Alert e-mails</h2>
        ${emails === null ? "<p>This local service cannot list them: it was started by an older release (<code>totes stop</code>, then <code>totes run</code>).</p>"
          : emails.length ? emails.map((m) => `<article class="email"><h3>${h(m.subject || "(no subject)")}</h3><pre>${h(m.message)}</pre></article>`).join("")
          : "<p>The alert topic has received none.</p>"}
      </section>`;
    return true;
  }, Math.max(POLL_MS, 5000));
}

// -- Sales --------------------------------------------------------------------------------

function salesPage() {
  main.innerHTML = `<h1>Sales</h1>
    <p class="hint">The client's questions, answered from the lake with the SQL of <code>totes lake query</code>.
    Each order counts once, in its current version.</p>
    <form id="filters" class="filters">
      <label>From <input type="date" name="from" value="${h(params.get("from") || "")}"></label>
      <label>To <input type="date" name="to" value="${h(params.get("to") || "")}"></label>
      <label>Currency <select name="currency"><option value="">every currency</option></select></label>
      <button type="submit">Show</button>
    </form>
    <div id="charts" class="charts"></div>`;
  const form = document.getElementById("filters");
  const draw = async () => {
    const query = new URLSearchParams(new FormData(form));
    for (const [key, value] of [...query]) if (!value) query.delete(key);
    history.replaceState(null, "", `/sales${query.toString() ? `?${query}` : ""}`);
    document.getElementById("charts").setAttribute("aria-busy", "true");
    const answer = await getJson(`/api/sales?${query}`);
    const select = form.elements.currency;
    if (select.options.length === 1) {
      for (const code of answer.currencies) select.add(new Option(code, code));
      select.value = params.get("currency") || "";
    }
    form.elements.from.min = form.elements.to.min = answer.first_day || "";
    form.elements.from.max = form.elements.to.max = answer.last_day || "";
    document.getElementById("charts").innerHTML = answer.charts
      .map(
        (c) => `<figure class="card" data-chart="${h(c.key)}">
          <figcaption><h2>${h(c.title)}</h2><p>${h(c.shows)}</p></figcaption>
          ${c.rows.length ? c.svg : "<p>No rows for these filters.</p>"}
          <details><summary>SQL</summary><button type="button" class="copy">Copy SQL</button><pre class="sql">${h(c.sql)}</pre></details>
          <details><summary>Figures (${c.rows.length} rows)</summary>
            ${table(c.columns, c.rows.map((row) => `<tr>${row.map((v) => `<td>${h(v)}</td>`).join("")}</tr>`), 'class="list figures"')}</details>
        </figure>`,
      )
      .join("");
    document.getElementById("charts").removeAttribute("aria-busy");
    return false;
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    keepDrawing(draw, 0);
  });
  main.addEventListener("click", async (event) => {
    if (!event.target.matches("button.copy")) return;
    const sql = event.target.parentElement.querySelector("pre.sql").textContent;
    try {
      await navigator.clipboard.writeText(sql);
      event.target.textContent = "Copied";
    } catch {
      // Without the clipboard: select the text, so one keystroke copies it.
      const range = document.createRange();
      range.selectNodeContents(event.target.parentElement.querySelector("pre.sql"));
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      event.target.textContent = "Selected: press Ctrl+C";
    }
  });
  keepDrawing(draw, 0);
}

// -- Start --------------------------------------------------------------------------------

getJson("/api/about")
  .then((about) => {
    document.getElementById("stack").textContent = about.stack;
  })
  .catch(() => {});

({
  executions: executionsPage,
  execution: () => executionPage(main.dataset.execution),
  health: healthPage,
  sales: salesPage,
})[main.dataset.page]();
