// logcanary's overview, the page's entry point: releases per day by their combined verdict, success rates per
// environment and per service, the filters kept in the URL; and a release's page, each service linking to the verdict
// its analysis published (ui?analysis=<id>, its top anomaly open). From "more failures than usual" to the exception:
// day -> release -> service -> its red dot and verbatim examples. Text from the API is only ever set with textContent.
"use strict";

(() => {
  const TOKEN_KEY = "logcanary.token"; // the same tab-scoped token as the verdict page (ui.js)
  const DAY_MS = 86_400_000;
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);

  function el(tag, attrs = {}, ...children) {
    return fill(document.createElement(tag), attrs, children);
  }
  function svg(tag, attrs = {}, ...children) {
    return fill(document.createElementNS("http://www.w3.org/2000/svg", tag), attrs, children);
  }
  function fill(node, attrs, children) {
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "text") node.textContent = String(value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }
  const when = (iso) => (iso ? String(iso).replace("T", " ").replace(/(\.\d+)?(Z|\+00:00)$/, "") : "");
  const percent = (rate) => (rate === null || rate === undefined ? "—" : `${Math.round(rate * 1000) / 10}%`);
  const dayOf = (iso) => new Date(iso).toISOString().slice(0, 10);

  async function api(path) {
    const headers = { Accept: "application/json" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await fetch(path, { headers });
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      const detail = body && typeof body.detail === "string" ? body.detail : response.statusText;
      const error = new Error(`${path.split("?")[0]} answered ${response.status}: ${detail}`);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  function showMessage(text) {
    $("message").textContent = text;
    $("message").className = "message message-error";
    $("message").hidden = !text;
  }

  function failed(error) {
    const needsToken = error.status === 401 || error.status === 403;
    if (needsToken) $("token-box").open = true;
    showMessage(needsToken ? "This service needs the API token to read: enter it above." : String(error.message));
    document.body.dataset.loaded = "error";
  }

  // -- the overview ---------------------------------------------------------------------------------

  /** The filters, from the URL (the URL is the page's state: a link opens exactly this view). */
  function filters() {
    const days = Number(params.get("days")) || 30;
    return {
      environment: params.get("environment") || "",
      service: params.get("service") || "",
      days: [7, 14, 30, 90].includes(days) ? days : 30,
      day: params.get("day") || "",
    };
  }

  function overviewLink(changes) {
    const f = { ...filters(), ...changes };
    const query = new URLSearchParams({ view: "overview" });
    if (f.environment) query.set("environment", f.environment);
    if (f.service) query.set("service", f.service);
    if (f.days !== 30) query.set("days", String(f.days));
    if (f.day) query.set("day", f.day);
    return `ui?${query}`;
  }

  function releaseLink(release) {
    return `ui?${new URLSearchParams({ view: "release", release })}`;
  }

  function apiQuery(f, since) {
    const query = new URLSearchParams({ since: since.toISOString() });
    if (f.environment) query.set("environment", f.environment);
    if (f.service) query.set("service", f.service);
    return query;
  }

  /** The day's releases by combined verdict (running ones apart: not decided yet). */
  function tally(releases) {
    const counts = { pass: 0, fail: 0, inconclusive: 0, running: 0 };
    for (const r of releases) counts[r.status === "running" ? "running" : r.verdict] += 1;
    return counts;
  }

  function renderDays(f, releases, end) {
    const byDay = new Map();
    for (let n = f.days - 1; n >= 0; n--) byDay.set(new Date(end - n * DAY_MS).toISOString().slice(0, 10), []);
    for (const r of releases) byDay.get(dayOf(r.started_at))?.push(r);
    const days = [...byDay.entries()].map(([day, list]) => ({ day, list, counts: tally(list) }));
    const average = days.reduce((sum, d) => sum + d.counts.fail, 0) / days.length;
    const tallest = Math.max(1, ...days.map((d) => d.list.length));
    const width = 960;
    const height = 180;
    const slot = width / days.length;
    const bar = Math.max(4, slot * 0.7);
    const chart = svg("svg", { viewBox: `0 0 ${width} ${height + 24}`, class: "day-chart", role: "group", "aria-label": "Releases per day" });
    days.forEach((d, index) => {
      const unusual = d.counts.fail > 0 && d.counts.fail > 2 * average;
      const label = `${d.day}: ${d.list.length} releases, ${d.counts.fail} failed, ${d.counts.pass} passed, ${d.counts.inconclusive} inconclusive, ${d.counts.running} running${unusual ? "; more failures than usual" : ""}`;
      const link = svg("a", { href: overviewLink({ day: d.day }), class: "day", "data-day": d.day, "aria-label": label, "data-unusual": unusual ? "1" : null, "aria-current": d.day === f.day ? "true" : null });
      link.append(svg("title", { text: label }));
      const x = index * slot + (slot - bar) / 2;
      link.append(svg("rect", { x: index * slot, y: 0, width: slot, height, class: "day-hit" }));
      let y = height;
      for (const name of ["fail", "inconclusive", "running", "pass"]) {
        const h = (d.counts[name] / tallest) * (height - 8);
        if (!h) continue;
        y -= h;
        link.append(svg("rect", { x, y, width: bar, height: h, class: `day-bar day-${name}` }));
      }
      if (unusual) link.append(svg("rect", { x: x - 2, y: y - 2, width: bar + 4, height: height - y + 2, class: "day-unusual" }));
      if (index % Math.ceil(days.length / 10) === 0) {
        link.append(svg("text", { x: x + bar / 2, y: height + 16, class: "day-label", text: d.day.slice(5) }));
      }
      chart.append(link);
    });
    $("per-day").replaceChildren(chart);
    const all = tally(releases);
    $("totals").textContent = `${releases.length} releases in ${f.days} days: ${all.fail} failed, ${all.pass} passed, ${all.inconclusive} inconclusive, ${all.running} running.`;
  }

  function renderReleases(f, releases) {
    const shown = f.day ? releases.filter((r) => dayOf(r.started_at) === f.day) : releases;
    $("releases-title").textContent = f.day ? `Releases on ${f.day}` : "Releases, newest first";
    const body = $("releases").querySelector("tbody");
    body.replaceChildren(
      ...shown.map((r) =>
        el(
          "tr",
          { "data-release": r.release, "data-verdict": r.verdict },
          el("td", {}, el("a", { href: releaseLink(r.release), class: "release-link" }, r.release)),
          el("td", {}, when(r.started_at)),
          el("td", {}, r.environments.join(", ") || "—"),
          el("td", {}, el("span", { class: `tag tag-verdict-${r.verdict}` }, r.status === "running" ? `${r.verdict} (running)` : r.verdict)),
          el("td", {}, r.services.map((s) => `${s.service} ${s.verdict}`).join(", ")),
        ),
      ),
    );
    if (!shown.length) body.append(el("tr", {}, el("td", { colspan: 5, class: "empty" }, "No release in this period (analyses name theirs with release).")));
  }

  function renderRates(table, groups, what, onPick) {
    table.querySelector("thead").replaceChildren(
      el("tr", {}, ...[what, "Analyses", "Passed", "Failed", "Inconclusive", "Success rate"].map((h, i) => el("th", { scope: "col", class: i ? "num" : null }, h))),
    );
    table.querySelector("tbody").replaceChildren(
      ...groups.map((g) => {
        const href = onPick(g.key);
        return el(
          "tr",
          { "data-key": g.key },
          el("td", {}, href ? el("a", { href }, g.key) : g.key),
          ...[g.analyses, g.passed, g.failed, g.inconclusive].map((n) => el("td", { class: "num" }, String(n))),
          el("td", { class: "num" }, percent(g.success_rate)),
        );
      }),
    );
    if (!groups.length) table.querySelector("tbody").append(el("tr", {}, el("td", { colspan: 6, class: "empty" }, "No analysis in this period.")));
  }

  function fillFilter(select, keys, chosen) {
    const options = [...new Set([...keys.filter((k) => k !== "(none)"), ...(chosen ? [chosen] : [])])].sort();
    select.replaceChildren(el("option", { value: "" }, "all"), ...options.map((k) => el("option", { value: k }, k)));
    select.value = chosen;
  }

  async function overview() {
    const f = filters();
    const end = Date.now();
    const since = new Date(end - (f.days - 1) * DAY_MS);
    since.setUTCHours(0, 0, 0, 0);
    const query = apiQuery(f, since);
    const period = new URLSearchParams({ since: since.toISOString() }); // the filters' choices: the whole period's
    const [releases, byEnvironment, byService, environments, services] = await Promise.all([
      api(`v1/releases?${query}&limit=1000`),
      api(`v1/analyses/summary?${query}&by=environment`),
      api(`v1/analyses/summary?${query}&by=service`),
      api(`v1/analyses/summary?${period}&by=environment`),
      api(`v1/analyses/summary?${period}&by=service`),
    ]);
    fillFilter($("environment"), environments.groups.map((g) => g.key), f.environment);
    fillFilter($("service"), services.groups.map((g) => g.key), f.service);
    $("days").value = String(f.days);
    renderDays(f, releases, end);
    renderReleases(f, releases);
    renderRates($("environments"), byEnvironment.groups, "Environment", (key) => (key === "(none)" ? null : overviewLink({ environment: key, day: "" })));
    renderRates($("services"), byService.groups, "Service", (key) => overviewLink({ service: key, day: "" }));
  }

  // -- a release ------------------------------------------------------------------------------------

  function analysisLink(service) {
    const query = new URLSearchParams({ analysis: service.analysis_id });
    if (service.top_anomaly) query.set("expand", service.top_anomaly.cluster_id);
    return `ui?${query}`;
  }

  async function release(id) {
    const r = await api(`v1/releases/${encodeURIComponent(id)}`);
    document.title = `logcanary: release ${r.release}`;
    $("release").className = `verdict verdict-${r.verdict}`;
    $("release").dataset.verdict = r.verdict;
    $("release-title").textContent = `Release ${r.release}: ${r.verdict.toUpperCase()}${r.status === "running" ? " (running)" : ""}`;
    $("release-reason").textContent = r.reason;
    const span = `started ${when(r.started_at)}${r.finished_at ? `, ended ${when(r.finished_at)}` : ""} (UTC)`;
    $("release-span").textContent = `${r.environments.length ? `${r.environments.join(", ")}: ` : ""}${r.services.length} services, ${span}`;
    const body = $("release-services").querySelector("tbody");
    body.replaceChildren(
      ...r.services.map((s) => {
        const top = s.top_anomaly;
        return el(
          "tr",
          { "data-service": s.service, "data-verdict": s.verdict },
          el("td", {}, el("a", { href: analysisLink(s), class: "service-link", title: "The verdict this analysis published" }, s.service)),
          el("td", {}, el("span", { class: `tag tag-verdict-${s.verdict}` }, s.status === "running" ? `${s.verdict} (running)` : s.verdict)),
          el("td", { class: "num" }, s.risk === null ? "—" : String(Math.round(s.risk * 10) / 10)),
          el("td", {}, `${s.canary} vs ${s.baseline || "history"}`),
          el(
            "td",
            {},
            top ? el("code", { class: "top-template" }, top.template) : "none",
            top && top.example ? el("pre", { class: "example top-example" }, top.example.split("\n").slice(0, 3).join("\n")) : null,
          ),
        );
      }),
    );
  }

  async function start() {
    const token = $("token");
    token.value = sessionStorage.getItem(TOKEN_KEY) || "";
    token.addEventListener("change", () => {
      if (token.value.trim()) sessionStorage.setItem(TOKEN_KEY, token.value.trim());
      else sessionStorage.removeItem(TOKEN_KEY);
      location.reload();
    });
    for (const id of ["environment", "service", "days"]) {
      $(id).addEventListener("change", () => {
        const value = $(id).value;
        location.assign(overviewLink({ [id]: id === "days" ? Number(value) : value, day: "" }));
      });
    }
    const releaseId = params.get("view") === "release" ? params.get("release") : null;
    $("overview-view").hidden = Boolean(releaseId);
    $("release-view").hidden = !releaseId;
    $("filters").hidden = Boolean(releaseId);
    $("nav-overview").toggleAttribute("aria-current", !releaseId);
    try {
      if (releaseId) await release(releaseId);
      else await overview();
      document.body.dataset.loaded = "true";
    } catch (error) {
      failed(error);
    }
  }

  start();
})();
