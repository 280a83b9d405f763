// logcanary's web page: reads the JSON API, renders the verdict and the canary's clusters.
// Log text is only ever put in the page with textContent / text nodes, never as HTML.
"use strict";

(() => {
  const TOKEN_KEY = "logcanary.token";
  const $ = (id) => document.getElementById(id);
  const state = { services: [], expanded: new Set(), ticket: 0, needsToken: false };

  /** An element; string children become text nodes, so they are never parsed as HTML. */
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "text") node.textContent = String(value);
      else if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  const number = (n) => Number(n).toLocaleString("en-US", { maximumFractionDigits: 1 });
  const plural = (n, word, many = `${word}s`) => `${number(n)} ${n === 1 ? word : many}`;

  // -- API ------------------------------------------------------------------------------------------

  async function api(path, options = {}) {
    const headers = { Accept: "application/json", ...(options.headers || {}) };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await fetch(path, { ...options, headers });
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (!response.ok) {
      const detail = body && typeof body.detail === "string" ? body.detail : response.statusText;
      const error = new Error(`${path.split("?")[0]} answered ${response.status}: ${detail}`);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  function showMessage(text, kind = "error") {
    const box = $("message");
    box.textContent = text;
    box.className = `message message-${kind}`;
    box.dataset.kind = kind;
    box.setAttribute("role", kind === "error" ? "alert" : "status");
    box.hidden = !text;
  }

  // -- pickers ------------------------------------------------------------------------------------

  /** Deployments, most recently seen first (ties: later first_seen, then later name). */
  function recentFirst(deployments) {
    const key = (d) => [d.last_seen ?? -Infinity, d.first_seen ?? -Infinity, d.deployment];
    return [...deployments].sort((a, b) => {
      const [ka, kb] = [key(a), key(b)];
      for (let i = 0; i < ka.length; i++) if (ka[i] !== kb[i]) return ka[i] < kb[i] ? 1 : -1;
      return 0;
    });
  }

  function fillSelect(select, options, chosen) {
    select.replaceChildren(
      ...options.map(([value, label]) => {
        const option = el("option", { value }, label);
        option.defaultSelected = value === chosen;
        return option;
      }),
    );
    select.value = chosen;
  }

  function fillServices(wanted) {
    const names = state.services.map((s) => s.service);
    const chosen = names.includes(wanted) ? wanted : names[0] || "";
    fillSelect($("service"), names.map((n) => [n, n]), chosen);
    return wanted && !names.includes(wanted) ? `No events seen for service "${wanted}": showing ${chosen || "nothing"}.` : "";
  }

  function fillDeployments(wantedCanary, wantedBaseline) {
    const service = state.services.find((s) => s.service === $("service").value);
    const deployments = service ? recentFirst(service.deployments) : [];
    const names = deployments.map((d) => d.deployment);
    const label = (d) => `${d.deployment} (${plural(d.events, "event")})`;
    const canary = names.includes(wantedCanary) ? wantedCanary : names[0] || "";
    let baseline = names.find((n) => n !== canary) || "";
    if (wantedBaseline !== null && (wantedBaseline === "" || names.includes(wantedBaseline))) baseline = wantedBaseline;
    fillSelect($("canary"), deployments.map((d) => [d.deployment, label(d)]), canary);
    fillSelect(
      $("baseline"),
      [["", "earlier deployments"], ...deployments.map((d) => [d.deployment, label(d)])],
      baseline,
    );
    return wantedCanary && !names.includes(wantedCanary) ? `No deployment "${wantedCanary}" of this service: showing ${canary || "nothing"}.` : "";
  }

  function selection() {
    return { service: $("service").value, canary: $("canary").value, baseline: $("baseline").value };
  }

  /** Mirrors the choice (and the expanded clusters) in the query string, so the link can be shared. */
  function syncUrl() {
    const { service, canary, baseline } = selection();
    const query = new URLSearchParams();
    if (service) query.set("service", service);
    if (canary) query.set("canary", canary);
    if (service) query.set("baseline", baseline);
    for (const id of state.expanded) query.append("expand", id);
    history.replaceState(null, "", `${location.pathname}?${query}`);
  }

  // -- verdict ------------------------------------------------------------------------------------

  function renderVerdict(verdict) {
    const box = $("verdict");
    box.className = `verdict verdict-${verdict.verdict}`;
    box.dataset.verdict = verdict.verdict;
    const compared = verdict.baseline.length ? verdict.baseline.join(", ") : "nothing";
    box.replaceChildren(
      el(
        "div",
        { class: "verdict-head" },
        el("p", { class: "verdict-name" }, verdict.verdict.toUpperCase()),
        el(
          "p",
          { class: "risk" },
          el("label", { for: "risk-meter" }, `Risk ${number(verdict.risk)} / 100`),
          el("meter", { id: "risk-meter", min: 0, max: 100, low: 40, high: 50, optimum: 0, value: verdict.risk }),
        ),
      ),
      el("p", { class: "reason" }, verdict.reason),
      el(
        "p",
        { class: "counts" },
        `${verdict.service}: canary ${verdict.canary} with ${plural(verdict.canary_events, "event")} vs ` +
          `${compared} with ${plural(verdict.baseline_events, "event")} · ` +
          `${plural(verdict.anomaly_count, "anomaly", "anomalies")} at the fail score · ` +
          `sensitivity ${verdict.thresholds.sensitivity}`,
      ),
    );
  }

  /** Drops name baseline events the canary stopped logging: they have no canary cluster to show. */
  function renderDrops(verdict) {
    const drops = verdict.anomalies.filter((a) => a.direction === "down");
    $("drops").hidden = !drops.length;
    $("drop-list").replaceChildren(
      ...drops.map((a) =>
        el(
          "li",
          { class: "tpl tpl-anomalous", "data-cluster-id": a.cluster_id },
          el("p", { class: "tpl-head" }, `${number(a.canary_count)} in canary · ${number(a.baseline_count)} in baseline · ${(a.ratio ?? 0).toFixed(2)}x its share · score ${number(a.score)}`),
          el("pre", { class: "template" }, a.template),
          el("ol", { class: "examples" }, ...a.baseline_examples.map(example)),
        ),
      ),
    );
  }

  // -- clusters -----------------------------------------------------------------------------------

  /** The anomalies that name this cluster (by cluster id or by one of its templates' ids). */
  function anomaliesOf(cluster, verdict) {
    const ids = new Set(cluster.templates.map((t) => t.template_id));
    return verdict.anomalies.filter((a) => a.cluster_id === cluster.cluster_id || a.template_ids.some((id) => ids.has(id)));
  }

  function finding(anomalies, suppressed) {
    if (!anomalies.length) {
      return el("span", { class: suppressed ? "tag tag-ignored" : "tag tag-known" }, suppressed ? "ignored" : "known");
    }
    const top = anomalies.reduce((a, b) => (b.score > a.score ? b : a));
    const kinds = [...new Set(anomalies.map((a) => a.kind))].join(", ");
    return el(
      "div",
      { class: "finding" },
      el("span", { class: "tag tag-anomalous", title: top.kind === "unknown" ? "never seen in the baseline" : "far more frequent than in the baseline" }, kinds),
      el("span", { class: "score" }, `score ${number(top.score)}`),
      top.priority ? el("span", { class: "tag tag-priority" }, "priority") : null,
      el("span", { class: "counts" }, `${number(top.canary_count)} in canary · ${number(top.baseline_count)} in baseline`),
    );
  }

  // -- large evidence: many hosts, long stack traces ------------------------------------------------

  const HOSTS_INLINE = 5; // more hosts than this collapse to a count with a toggle
  const FOLD_MIN_LINES = 12; // examples with this many lines or fewer are shown whole
  const FOLD_MIN_HIDDEN = 4; // never fold fewer lines than this
  const FRAME_GAP = 3; // framework frames tolerated between two application frames (lambdas, proxies)
  const JAVA_FRAME = /^\s*at\s+(?:[\w$.-]+\/)?([\w$.<>/-]+)\(/; // "at java.base/java.lang.Foo.bar(" names java.lang.Foo.bar
  const PY_FRAME = /^\s*File "([^"]+)", line \d+, in \S+/;
  const GO_FRAME = /^([\w./-]+(?:\.\(?\*?[\w]+\)?)*\.[\w]+)\(.*\)$/;
  const GO_FILE = /^\s+\S+\.go:\d+/;
  // Framework frames, as service/engine/stacktrace.py tells them apart from application frames.
  const LIBRARY_PREFIXES = [
    "java.", "javax.", "jdk.", "sun.", "com.sun.", "kotlin.", "kotlinx.", "scala.", "groovy.",
    "org.springframework.", "org.apache.catalina.", "org.apache.tomcat.", "io.netty.", "reactor.",
    "runtime.", "runtime/", "net/http.", "testing.", "reflect.", "panic(",
  ];
  const isLibrary = (name) => LIBRARY_PREFIXES.some((prefix) => name.startsWith(prefix));
  let uid = 0;
  const nextId = (prefix) => `${prefix}-${++uid}`;

  /** The stack frames of an example's lines: [{start, end, app}], line indexes inclusive. */
  function framesOf(lines) {
    const frames = [];
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i];
      let match = JAVA_FRAME.exec(line);
      if (match) {
        frames.push({ start: i, end: i, app: !isLibrary(match[1]) });
        continue;
      }
      match = PY_FRAME.exec(line);
      if (match) {
        const code = i + 1 < lines.length && /^\s+\S/.test(lines[i + 1]) && !PY_FRAME.test(lines[i + 1]);
        const path = match[1];
        frames.push({ start: i, end: code ? i + 1 : i, app: !(path.includes("site-packages") || path.includes("/lib/python")) });
        if (code) i++;
        continue;
      }
      match = GO_FRAME.exec(line.trim());
      if (match && i + 1 < lines.length && GO_FILE.test(lines[i + 1])) {
        frames.push({ start: i, end: i + 1, app: !isLibrary(match[1]) });
        i++;
      }
    }
    return frames;
  }

  /** The lines of an example to show folded, as [shownHead, hidden, shownTail] line ranges, or null to show it whole.
   *  Java and Go print the innermost frame first: the headline, the exception and the frames through the
   *  application frames stay; the rest folds. Python prints it last: the headline stays, then the frames from the
   *  last application frame on with the exception line. */
  function foldOf(lines) {
    if (lines.length <= FOLD_MIN_LINES) return null;
    const frames = framesOf(lines);
    if (!frames.length) return null;
    const traceback = lines.findIndex((line) => line.startsWith("Traceback (most recent call last)"));
    let hideFrom;
    let hideTo; // exclusive
    if (traceback >= 0) {
      const apps = frames.filter((f) => f.app);
      const keep = apps.length ? apps[apps.length - 1] : frames[frames.length - 1];
      hideFrom = traceback + 1;
      hideTo = keep.start;
    } else {
      // The first run of frames (Caused by: and "... N more" end it).
      const run = [frames[0]];
      for (const frame of frames.slice(1)) {
        if (frame.start !== run[run.length - 1].end + 1) break;
        run.push(frame);
      }
      const firstApp = run.findIndex((f) => f.app);
      let last = Math.min(run.length, 3) - 1; // no application frame: the top frames
      if (firstApp >= 0) {
        last = firstApp;
        for (let i = firstApp + 1; i < run.length && i - last <= FRAME_GAP + 1; i++) if (run[i].app) last = i;
      }
      hideFrom = run[last].end + 1;
      hideTo = lines.length;
    }
    if (hideTo - hideFrom < FOLD_MIN_HIDDEN) return null;
    return [hideFrom, hideTo];
  }

  /** A verbatim example: the <pre> always holds the whole text (copying it gives the exact message); a long
   *  stack trace hides the lines after its application frames behind a toggle. */
  function example(text) {
    const lines = text.split("\n");
    const fold = foldOf(lines);
    if (!fold) return el("li", {}, el("pre", { class: "example" }, text));
    const [from, to] = fold;
    // The hidden part starts with its line break, so the folded <pre> ends on its last shown line.
    const head = lines.slice(0, from).join("\n");
    const hidden = `\n${lines.slice(from, to).join("\n")}`;
    const tail = to < lines.length ? `\n${lines.slice(to).join("\n")}` : "";
    const rest = el("span", { class: "fold-rest", hidden: true }, hidden);
    const pre = el("pre", { class: "example example-folded", id: nextId("example") }, head, rest, tail || null);
    const count = to - from;
    const toggle = el("button", { type: "button", class: "fold-toggle", "aria-expanded": "false", "aria-controls": pre.id }, `${plural(count, "more line")}`);
    toggle.addEventListener("click", () => {
      const open = toggle.getAttribute("aria-expanded") !== "true";
      toggle.setAttribute("aria-expanded", String(open));
      rest.hidden = !open;
      pre.classList.toggle("example-folded", !open);
      toggle.textContent = open ? `Fold ${plural(count, "line")}` : plural(count, "more line");
    });
    return el("li", {}, pre, toggle);
  }

  /** "hosts a, b" inline; past HOSTS_INLINE a toggle "N hosts" that shows the whole list. */
  function hostsOf(hosts) {
    if (!hosts.length) return { inline: "no host", list: null };
    if (hosts.length <= HOSTS_INLINE) return { inline: `hosts ${hosts.join(", ")}`, list: null };
    const list = el("ul", { class: "host-list", id: nextId("hosts"), hidden: true, "aria-label": "Hosts" }, ...hosts.map((h) => el("li", {}, h)));
    const label = `${number(hosts.length)} hosts`;
    const toggle = el("button", { type: "button", class: "hosts-toggle", "aria-expanded": "false", "aria-controls": list.id, title: "Show every host" }, label);
    toggle.addEventListener("click", () => {
      const open = toggle.getAttribute("aria-expanded") !== "true";
      toggle.setAttribute("aria-expanded", String(open));
      list.hidden = !open;
    });
    return { inline: toggle, list };
  }

  function renderDetail(cell, cluster, anomalous) {
    const items = cluster.templates.map((t) => {
      const hosts = hostsOf(t.hosts);
      return el(
        "li",
        { class: anomalous.has(t.template_id) ? "tpl tpl-anomalous" : "tpl" },
        el(
          "p",
          { class: "tpl-head" },
          el("code", {}, t.template_id),
          ` · ${plural(t.count, "event")} · level `,
          el("span", { class: `level level-${t.level}` }, t.level),
          " · ",
          hosts.inline,
          anomalous.has(t.template_id) ? el("span", { class: "tag tag-anomalous" }, "anomalous") : null,
        ),
        hosts.list,
        el("pre", { class: "template" }, t.template),
        el("p", { class: "examples-title" }, `Examples (${t.examples.length})`),
        el("ol", { class: "examples" }, ...t.examples.map(example)),
      );
    });
    cell.replaceChildren(el("ul", { class: "templates", "aria-label": `Templates of cluster ${cluster.cluster_id}` }, ...items));
  }

  async function ignore(cluster, anomalies, button) {
    const { service } = selection();
    const text = new Map(cluster.templates.map((t) => [t.template_id, t.template]));
    const targets = new Map();
    for (const a of anomalies) for (const id of a.template_ids) targets.set(id, text.get(id) || a.template);
    if (!window.confirm(`Ignore cluster ${cluster.cluster_id} of ${service}? Similar events will never be anomalies again.`)) return;
    button.disabled = true;
    const created = [];
    try {
      for (const [id, template] of targets) {
        const feedback = await api("v1/feedback", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ service, action: "ignore", template, template_id: id, author: "web ui" }),
        });
        created.push(feedback.id);
      }
      showMessage(`Cluster ${cluster.cluster_id} is ignored from now on; DELETE /v1/feedback/${created.join(", ")} undoes it.`, "info");
      await load();
    } catch (error) {
      button.disabled = false;
      if (error.status === 401) {
        showMessage("An API token is needed to ignore a cluster: enter it under “API token” and try again.");
        $("token-box").open = true;
        $("token").focus();
      } else if (error.status === 403) {
        showMessage("The server refused the API token: check it under “API token”.");
      } else {
        showMessage(error.message);
      }
    }
  }

  function renderClusters(clusters, verdict) {
    const table = $("clusters");
    for (const body of table.querySelectorAll("tbody")) body.remove();
    const suppressed = new Set(verdict.suppressed.map((s) => s.cluster_id));
    const rows = clusters.map((cluster) => ({ cluster, anomalies: anomaliesOf(cluster, verdict) }));
    const score = (r) => Math.max(-1, ...r.anomalies.map((a) => a.score));
    rows.sort((a, b) => score(b) - score(a) || b.cluster.count - a.cluster.count);
    if (!rows.length) {
      table.append(el("tbody", {}, el("tr", {}, el("td", { colspan: 5, class: "empty" }, "No events for this deployment."))));
    }
    rows.forEach(({ cluster, anomalies }, index) => {
      const anomalous = new Set(anomalies.flatMap((a) => a.template_ids));
      cluster.templates.sort((a, b) => anomalous.has(b.template_id) - anomalous.has(a.template_id) || b.count - a.count);
      const status = anomalies.length ? "anomalous" : "known";
      const detailId = `detail-${index}`;
      const detailCell = el("td", { colspan: 5 });
      const detail = el("tr", { class: "detail", id: detailId, hidden: true }, detailCell);
      const expander = el("button", { type: "button", class: "expander", "aria-expanded": "false", "aria-controls": detailId, title: "Show templates and examples" }, cluster.cluster_id);
      const setExpanded = (open) => {
        expander.setAttribute("aria-expanded", String(open));
        detail.hidden = !open;
        if (open) renderDetail(detailCell, cluster, anomalous);
        else detailCell.replaceChildren();
        if (open) state.expanded.add(cluster.cluster_id);
        else state.expanded.delete(cluster.cluster_id);
      };
      expander.addEventListener("click", () => {
        setExpanded(expander.getAttribute("aria-expanded") !== "true");
        syncUrl();
      });
      const more = cluster.templates.length - 1;
      const first = cluster.templates[0];
      const actions = anomalies.length
        ? el("button", { type: "button", class: "ignore", title: "Never report events like these again (POST /v1/feedback)" }, "Ignore")
        : null;
      if (actions) actions.addEventListener("click", () => ignore(cluster, anomalies, actions));
      const row = el(
        "tr",
        { class: "summary" },
        el("th", { scope: "row" }, expander),
        el("td", { class: "num" }, number(cluster.count)),
        el("td", {}, el("pre", { class: "template" }, first ? first.template : ""), more > 0 ? el("p", { class: "more" }, `+ ${plural(more, "more template")}`) : null),
        el("td", {}, finding(anomalies, suppressed.has(cluster.cluster_id))),
        el("td", {}, actions),
      );
      table.append(el("tbody", { class: `cluster cluster-${status}`, "data-status": status, "data-cluster-id": cluster.cluster_id }, row, detail));
      if (state.expanded.has(cluster.cluster_id)) setExpanded(true);
    });
    const shown = new Set(clusters.map((c) => c.cluster_id));
    for (const id of state.expanded) if (!shown.has(id)) state.expanded.delete(id);
  }

  // -- loading ------------------------------------------------------------------------------------

  async function load() {
    const ticket = ++state.ticket;
    const { service, canary, baseline } = selection();
    syncUrl();
    document.body.dataset.loaded = "false";
    if (!service || !canary) {
      $("verdict").replaceChildren(el("p", { class: "verdict-name" }, "No events yet"), el("p", { class: "reason" }, "Send log events to POST /v1/events or through Kafka."));
      renderClusters([], { anomalies: [], suppressed: [] });
      document.body.dataset.loaded = "true";
      return;
    }
    const query = new URLSearchParams({ service, canary, window: "all" });
    if (baseline) query.set("baseline", baseline);
    const clustersUrl = `v1/services/${encodeURIComponent(service)}/clusters?${new URLSearchParams({ deployment: canary })}`;
    try {
      const [verdict, clusters] = await Promise.all([api(`v1/verdict?${query}`), api(clustersUrl)]);
      if (ticket !== state.ticket) return; // a newer choice is loading
      renderVerdict(verdict);
      renderDrops(verdict);
      renderClusters(clusters, verdict);
      if ($("message").dataset.kind === "error") showMessage("");
      syncUrl();
      document.body.dataset.loaded = "true";
    } catch (error) {
      if (ticket !== state.ticket) return;
      readFailed(error);
      document.body.dataset.loaded = "error";
    }
  }

  /** Reads need the token when the server sets LOGCANARY_PROTECT_READS: ask for it instead of a bare 401. */
  function readFailed(error) {
    if (error.status !== 401 && error.status !== 403) {
      showMessage(error.message);
      return;
    }
    state.needsToken = true;
    showMessage(error.status === 401
      ? "This server protects its logs: enter the API token under “API token”."
      : "The server refused the API token: check it under “API token”.");
    $("token-box").open = true;
    $("token").focus();
  }

  async function start() {
    const params = new URLSearchParams(location.search);
    for (const id of params.getAll("expand")) state.expanded.add(id);
    const token = $("token");
    token.value = sessionStorage.getItem(TOKEN_KEY) || "";
    token.addEventListener("change", () => {
      if (token.value.trim()) sessionStorage.setItem(TOKEN_KEY, token.value.trim());
      else sessionStorage.removeItem(TOKEN_KEY);
      if (state.needsToken) location.reload(); // the page could not read anything yet: start again
    });
    $("pick").addEventListener("submit", (event) => {
      event.preventDefault();
      showMessage("");
      load();
    });
    $("service").addEventListener("change", () => {
      state.expanded.clear();
      fillDeployments("", null);
      load();
    });
    $("canary").addEventListener("change", () => {
      state.expanded.clear();
      if ($("baseline").value === $("canary").value) fillDeployments($("canary").value, null);
      load();
    });
    $("baseline").addEventListener("change", () => load());
    try {
      state.services = await api("v1/services");
    } catch (error) {
      readFailed(error);
      return;
    }
    const notes = [
      fillServices(params.get("service") || ""),
      fillDeployments(params.get("canary") || "", params.has("baseline") ? params.get("baseline") : null),
    ];
    showMessage(notes.filter(Boolean).join(" "), "warning");
    await load();
  }

  start();
})();
