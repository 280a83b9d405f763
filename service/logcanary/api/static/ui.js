// logcanary's web page: reads the JSON API, renders one verdict (live, or as an analysis published it) with its cluster
// map, its drops and the canary's clusters, all counted over that verdict's own scope, and a service's history
// (analyses, feedback rules and their audit trail). Log text is only ever put in the page with textContent / text
// nodes, never as HTML; charts are SVG built with createElementNS (no library, nothing from another host).
"use strict";

(() => {
  const TOKEN_KEY = "logcanary.token";
  const AUTHOR_KEY = "logcanary.author";
  // The window of the Argo Rollouts AnalysisTemplate (helm/logcanary/examples/analysistemplate.yaml) and of
  // GET /v1/verdict's default: by default the page judges what the gate judges.
  const GATE_WINDOW = "5m";
  const WINDOWS = ["1m", "5m", "15m", "1h", "6h", "24h", "all"];
  const SENSITIVITIES = ["low", "medium", "high"];
  const HISTORY = "+history"; // a baseline option's suffix: the control deployment and the earlier ones
  const ACTIONS = {
    not_a_risk: { label: "Not a risk", help: "accepted in this canary only; the next deployment is judged afresh" },
    ignore: { label: "Ignore", help: "never an anomaly again, in any deployment of the service" },
    priority: { label: "Priority", help: "high risk: always fails a canary when seen" },
  };
  const DROP_ACTIONS = ["not_a_risk", "ignore"]; // a drop's judgements (priority would fail every later release)
  const $ = (id) => document.getElementById(id);
  const state = {
    services: [],
    expanded: new Set(),
    ticket: 0,
    needsToken: false,
    view: "verdict",
    analysis: null, // id of the analysis whose published verdict is shown, or null for the live verdict
    analysisRecord: null, // that analysis (GET /v1/analyses/{id}): its question, for the "compare live" link
    until: null, // a live question's fixed window end (a verdict's page: what a deploy tool asked), or null: now
    map: null,
    rules: [], // the service's feedback rules (standing judgements shown in the judge forms)
    order: [], // the map's dots in keyboard order: anomalies first, as the verdict lists them
    openers: new Map(), // cluster id -> opens its row in the table (returns the row's tbody)
    pendingChange: null, // {before, what}: a judgement was saved; the next render announces the verdict's change
  };

  /** An element; string children become text nodes, so they are never parsed as HTML. */
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    return fill(node, attrs, children);
  }

  const SVG_NS = "http://www.w3.org/2000/svg";
  /** An SVG element, built like el(). */
  function svg(tag, attrs = {}, ...children) {
    return fill(document.createElementNS(SVG_NS, tag), attrs, children);
  }

  function fill(node, attrs, children) {
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "text") node.textContent = String(value);
      else if (key === "class") node.setAttribute("class", value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  const number = (n) => Number(n).toLocaleString("en-US", { maximumFractionDigits: 1 });
  const plural = (n, word, many = `${word}s`) => `${number(n)} ${n === 1 ? word : many}`;
  const firstLine = (text) => String(text).split("\n")[0];
  /** "2026-11-26 12:00:05" (UTC): the same for every reader, whatever their zone. */
  const when = (iso) => (iso ? String(iso).replace("T", " ").replace(/(\.\d+)?(Z|\+00:00)$/, "") : "");

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
      error.kind = body && body.error;
      error.detail = detail;
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

  /** A failed write: ask for the token on 401, say it was refused on 403, explain a refused judgement, else show
   *  the error. */
  function writeFailed(error, what) {
    if (error.status === 401) {
      showMessage(`An API token is needed to ${what}: enter it under “API token” and try again.`);
      $("token-box").open = true;
      $("token").focus();
    } else if (error.status === 403) {
      showMessage("The server refused the API token: check it under “API token”.");
    } else if (error.kind === "conflicting_rule") {
      showMessage(`Not saved: ${error.detail}.`);
    } else {
      showMessage(error.message);
    }
  }

  // -- the question: pickers and the URL ------------------------------------------------------------

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

  /** The canary and baseline pickers. ``wantedBaseline``: a deployment, "" (earlier deployments), a deployment with
   *  HISTORY appended (both), or null (the most recent other deployment). */
  function fillDeployments(wantedCanary, wantedBaseline) {
    const service = state.services.find((s) => s.service === $("service").value);
    const deployments = service ? recentFirst(service.deployments) : [];
    const names = deployments.map((d) => d.deployment);
    const label = (d) => `${d.deployment} (${plural(d.events, "event")})`;
    const canary = names.includes(wantedCanary) ? wantedCanary : names[0] || "";
    let baseline = names.find((n) => n !== canary) || "";
    const both = wantedBaseline && wantedBaseline.endsWith(HISTORY) ? wantedBaseline.slice(0, -HISTORY.length) : null;
    if (wantedBaseline !== null && (wantedBaseline === "" || names.includes(wantedBaseline) || names.includes(both))) baseline = wantedBaseline;
    const options = [["", "earlier deployments"], ...deployments.map((d) => [d.deployment, label(d)])];
    if (both && names.includes(both)) options.push([wantedBaseline, `${both} and earlier deployments`]);
    fillSelect($("canary"), deployments.map((d) => [d.deployment, label(d)]), canary);
    fillSelect($("baseline"), options, baseline);
    return wantedCanary && !names.includes(wantedCanary) ? `No deployment "${wantedCanary}" of this service: showing ${canary || "nothing"}.` : "";
  }

  /** Window and sensitivity: the gate's window by default; an analysis adds its own window as a choice. */
  function fillJudging(wantedWindow, wantedSensitivity) {
    const windows = WINDOWS.map((w) => [w, w === GATE_WINDOW ? `${w} (as the gate)` : w === "all" ? "all events" : `last ${w}`]);
    if (state.analysis) windows.unshift(["analysis", "the analysis' window"]);
    else if (wantedWindow && !WINDOWS.includes(wantedWindow) && wantedWindow !== "analysis") windows.push([wantedWindow, `last ${wantedWindow}`]);
    const window = state.analysis ? "analysis" : wantedWindow && wantedWindow !== "analysis" ? wantedWindow : GATE_WINDOW;
    fillSelect($("window"), windows, window);
    const sensitivity = SENSITIVITIES.includes(wantedSensitivity) ? wantedSensitivity : "";
    fillSelect($("sensitivity"), [["", "service default"], ...SENSITIVITIES.map((s) => [s, s])], sensitivity);
  }

  /** The question the controls ask: baseline is the control deployment ("" for none), history whether earlier
   *  deployments are compared too (always when there is no control deployment). */
  function selection() {
    const picked = $("baseline").value;
    const both = picked.endsWith(HISTORY);
    return {
      service: $("service").value,
      canary: $("canary").value,
      baseline: both ? picked.slice(0, -HISTORY.length) : picked,
      history: both || picked === "",
      window: $("window").value || GATE_WINDOW,
      sensitivity: $("sensitivity").value,
      until: state.until,
    };
  }

  /** The whole live question as query parameters: service, canary, baseline and/or history, window, sensitivity. */
  function questionQuery(question) {
    const query = new URLSearchParams();
    if (!question.service) return query;
    query.set("service", question.service);
    if (question.canary) query.set("canary", question.canary);
    if (question.baseline) query.set("baseline", question.baseline);
    if (question.history) query.set("history", "1");
    if (question.window && question.window !== "analysis") query.set("window", question.window);
    if (question.sensitivity) query.set("sensitivity", question.sensitivity);
    if (question.until) query.set("until", question.until);
    return query;
  }

  /** The live question of an analysis: what its "compare live" link asks (over the gate's window). */
  function liveQuestionOf(analysis) {
    return {
      service: analysis.service,
      canary: analysis.canary.deployment,
      baseline: analysis.baseline.deployment || "",
      history: Boolean(analysis.baseline.history || !analysis.baseline.deployment),
      window: GATE_WINDOW,
      sensitivity: analysis.sensitivity,
    };
  }

  /** Mirrors the view and the question (and the expanded clusters) in the query string, so the link can be shared
   *  and the question survives navigation: both views' links carry it. */
  function syncUrl() {
    const question = selection();
    const live = questionQuery(question);
    const query = new URLSearchParams();
    if (state.view === "history") {
      query.set("view", "history");
      for (const [key, value] of live) query.append(key, value);
      if (state.analysis) query.set("analysis", state.analysis);
    } else if (state.analysis) {
      query.set("analysis", state.analysis);
    } else {
      for (const [key, value] of live) query.append(key, value);
    }
    if (state.view === "verdict") for (const id of state.expanded) query.append("expand", id);
    if (![...query.keys()].length) query.set("view", "verdict"); // a bare ui opens the overview
    history.replaceState(null, "", `${location.pathname}?${query}`);
    const verdictLink = new URLSearchParams(state.analysis ? { analysis: state.analysis } : live);
    if (![...verdictLink.keys()].length) verdictLink.set("view", "verdict");
    const historyLink = new URLSearchParams([["view", "history"], ...live]);
    if (state.analysis) historyLink.set("analysis", state.analysis);
    $("nav-verdict").setAttribute("href", `ui?${verdictLink}`);
    $("nav-history").setAttribute("href", `ui?${historyLink}`);
    $("nav-history").toggleAttribute("aria-current", state.view === "history");
    $("nav-verdict").toggleAttribute("aria-current", state.view === "verdict");
  }

  function setView(view) {
    state.view = view;
    document.body.dataset.view = view;
    $("verdict-view").hidden = view !== "verdict";
    $("history-view").hidden = view !== "history";
    $("skip").hidden = view !== "verdict";
    for (const label of document.querySelectorAll(".for-verdict")) label.hidden = view !== "verdict";
  }

  // -- verdict ------------------------------------------------------------------------------------

  /** Labels of what the verdict made of an event type (a map dot, a table row, a template). */
  const STATE_LABELS = {
    anomalous: "anomalous",
    new: "new, below the fail score",
    known: "known",
    vanished: "vanished (baseline only)",
    ignored: "ignored",
    unjudged: "not judged",
  };
  const stateLabel = (point) => (point.state === "ignored" && point.feedback_action === "not_a_risk" ? "not a risk" : STATE_LABELS[point.state]);

  function renderVerdict(verdict, windowLabel, map) {
    const box = $("verdict");
    box.className = `verdict verdict-${verdict.verdict}`;
    box.dataset.verdict = verdict.verdict;
    box.dataset.risk = String(verdict.risk);
    const compared = verdict.baseline.length ? verdict.baseline.join(", ") : "nothing";
    const red = map.points.filter((p) => p.state === "anomalous").length;
    const listed = verdict.anomalies.length;
    let anomalies = `${plural(verdict.anomaly_count, "anomaly", "anomalies")} at the fail score`;
    if (verdict.anomaly_count) {
      anomalies += listed < verdict.anomaly_count
        ? ` (the ${listed} strongest: ${plural(red, "event type")}, the red dots)`
        : ` (${plural(red, "event type")}, the red dots)`;
    }
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
          `${compared} with ${plural(verdict.baseline_events, "event")} · ${anomalies} · ` +
          `sensitivity ${verdict.thresholds.sensitivity} · window ${windowLabel}`,
      ),
    );
  }

  /** After a judgement was saved: the verdict is scrolled to, focused, and its change announced (aria-live). */
  function announceChange(verdict) {
    const change = state.pendingChange;
    state.pendingChange = null;
    if (!change) return;
    const { before, what } = change;
    const now = `${verdict.verdict.toUpperCase()} (risk ${number(verdict.risk)})`;
    const was = `${before.verdict.toUpperCase()} (risk ${number(before.risk)})`;
    const text = was === now ? `${what}. The verdict stays ${now}.` : `${what}. The verdict changed from ${was} to ${now}.`;
    $("announce").textContent = text;
    $("verdict").dataset.changed = was === now ? "same" : "changed";
    $("verdict").scrollIntoView({ block: "start" });
    $("verdict").focus({ preventScroll: true });
  }

  /** In an analysis' view, or a question whose window's end is fixed (a verdict's page): says whose verdict this is,
   *  and links to the live verdict of the same question. */
  function renderAnalysisNote(analysis) {
    const note = $("analysis-note");
    note.hidden = !analysis && !state.until;
    if (!analysis && state.until) {
      const question = selection();
      note.replaceChildren(
        `The verdict over the ${question.window === "all" ? "events" : question.window} up to ${when(new Date(state.until).toISOString())} UTC: the window a deploy tool asked about (this page's link fixes it). `,
        el("a", { href: `ui?${questionQuery({ ...question, until: null })}`, id: "live-link" }, "Compare live"),
        ".",
      );
      return;
    }
    if (!analysis) {
      note.replaceChildren();
      return;
    }
    const span = analysis.finished_at
      ? `${analysis.status} at ${when(analysis.finished_at)} UTC`
      : `${analysis.status}, until ${when(analysis.ends_at)} UTC`;
    const record = state.analysisRecord;
    const live = record ? questionQuery(liveQuestionOf(record)) : new URLSearchParams();
    const against = record ? [record.baseline.deployment, record.baseline.history || !record.baseline.deployment ? "earlier deployments" : null].filter(Boolean).join(" and ") : "";
    note.replaceChildren(
      "The verdict analysis ",
      el("code", {}, analysis.id),
      ` published (${span}): what the deploy tool acted on${record ? `, ${record.canary.deployment} vs ${against}` : ""}. `,
      el("a", { href: `ui?${live}`, id: "live-link" }, "Compare live"),
      " (the same question over the last 5 minutes).",
    );
    if (record && record.release) {
      const release = new URLSearchParams({ view: "release", release: record.release });
      note.append(
        ` Part of release `,
        el("a", { href: `ui?${release}`, id: "release-link" }, record.release),
        record.environment ? ` in ${record.environment}.` : ".",
      );
    }
  }

  // -- drops: baseline events the canary stopped logging --------------------------------------------

  /** Drops name baseline events the canary stopped logging: they have no canary cluster, so they are listed (and
   *  judged) here. A drop a rule silenced is listed too, with its rule. */
  function renderDrops(verdict, map) {
    const drops = verdict.anomalies.filter((a) => a.direction === "down");
    const judged = map.points.filter((p) => !p.in_canary && p.state === "ignored");
    $("drops").hidden = !drops.length && !judged.length;
    const items = drops.map((a) => {
      const item = el(
        "li",
        { class: "tpl tpl-anomalous", "data-cluster-id": a.cluster_id, "data-template-ids": a.template_ids.join(" "), tabindex: -1 },
        el("p", { class: "tpl-head" }, el("span", { class: "tag tag-anomalous" }, "drop"), ` ${number(a.canary_count)} in canary · ${number(a.baseline_count)} in baseline · ${(a.ratio ?? 0).toFixed(2)}x its share · score ${number(a.score)}`),
        el("pre", { class: "template" }, a.template),
        el("ol", { class: "examples" }, ...a.baseline_examples.map(example)),
      );
      const targets = new Map([[a.template_ids[0], a.template]]);
      item.append(judgeForm(`drop of ${firstLine(a.template)}`, targets, DROP_ACTIONS, standingRules(a.template_ids)));
      return item;
    });
    for (const point of judged) {
      const rule = state.rules.find((r) => r.id === point.feedback_id);
      items.push(
        el(
          "li",
          { class: "tpl tpl-judged", "data-template-ids": point.template_id, "data-state": "ignored", tabindex: -1 },
          el("p", { class: "tpl-head" }, el("span", { class: "tag tag-ignored" }, stateLabel(point)), ` ${number(point.canary_count)} in canary · ${number(point.baseline_count)} in baseline`),
          el("pre", { class: "template" }, point.template),
          rule ? standingNote(rule) : null,
        ),
      );
    }
    $("drop-list").replaceChildren(...items);
  }

  // -- the cluster map ----------------------------------------------------------------------------

  const MAP_WIDTH = 960; // the layout is computed for these proportions (analysis/layout.py ASPECT)
  const MAP_HEIGHT = 400;
  const R_MIN = 4;
  const R_MAX = 24;
  const KEYBOARD_RANK = { anomalous: 0, ignored: 1, new: 2, known: 3, unjudged: 3, vanished: 4 };

  function pointLabel(point) {
    const finding = point.finding ? ` (${point.finding}, score ${number(point.score)})` : "";
    return `${stateLabel(point)}${finding}: ${firstLine(point.template)}. ${plural(point.canary_count, "event")} in the canary, ${number(point.baseline_count)} in the baseline.`;
  }

  /** The dots in keyboard order: anomalies as the verdict lists them (strongest evidence first), then the rest by
   *  what they are and their events. */
  function keyboardOrder(points) {
    const volume = (p) => p.canary_count + p.baseline_count;
    return [...points].sort(
      (a, b) =>
        KEYBOARD_RANK[a.state] - KEYBOARD_RANK[b.state] ||
        (a.anomaly ?? 0) - (b.anomaly ?? 0) ||
        (b.score ?? 0) - (a.score ?? 0) ||
        volume(b) - volume(a),
    );
  }

  /** One Tab stop for the whole map (the strongest anomaly first); the arrow keys, Home and End move between dots. */
  function moveFocus(from, to) {
    const dots = state.order.map((p) => document.querySelector(`#map g.dot[data-template-id="${p.template_id}"]`));
    const index = Math.max(0, Math.min(dots.length - 1, to));
    for (const dot of dots) dot.setAttribute("tabindex", "-1");
    dots[index].setAttribute("tabindex", "0");
    dots[index].focus();
  }

  function renderMap(map) {
    state.map = map;
    const box = $("map");
    const points = map.points;
    const volume = (p) => (p.in_canary ? p.canary_count : p.baseline_count);
    const most = Math.max(1, ...points.map(volume));
    const radius = (p) => R_MIN + (R_MAX - R_MIN) * Math.sqrt(volume(p) / most);
    const counts = { anomalous: 0, new: 0, known: 0, vanished: 0, ignored: 0, unjudged: 0 };
    for (const p of points) counts[p.state] += 1;
    const verdict = map.verdict;
    const anomalies = verdict ? new Set(points.filter((p) => p.state === "anomalous").map((p) => p.anomaly)).size : 0;
    const parts = [`${counts.anomalous} anomalous${counts.anomalous ? ` (${plural(anomalies, "anomaly", "anomalies")} of the verdict)` : ""}`];
    if (counts.new) parts.push(`${counts.new} new below the fail score`);
    parts.push(`${counts.known} known`);
    if (counts.vanished) parts.push(`${counts.vanished} vanished`);
    if (counts.ignored) parts.push(`${counts.ignored} ignored or not a risk`);
    if (counts.unjudged) parts.push(`${counts.unjudged} not judged (${verdict.reason_code})`);
    const summary = `${plural(points.length, "event type")}: ${parts.join(", ")}` +
      (map.omitted ? ` (${number(map.omitted)} small ones left out)` : "") +
      (verdict && verdict.anomaly_count > verdict.anomalies.length
        ? `. The verdict lists its ${verdict.anomalies.length} strongest of ${number(verdict.anomaly_count)} anomalies: only those are red.`
        : ".");
    state.order = keyboardOrder(points);
    const first = state.order[0];
    // Drawn largest first so small dots stay on top; anomalous ones last, highest score on top.
    const drawn = [...points].sort((a, b) => {
      const red = (a.state === "anomalous") - (b.state === "anomalous");
      if (red) return red;
      if (a.state === "anomalous") return (a.score ?? 0) - (b.score ?? 0);
      return radius(b) - radius(a);
    });
    const dots = drawn.map((point) => {
      const r = radius(point);
      const classes = ["dot", `dot-${point.state}`];
      if (!point.in_canary) classes.push("dot-baseline-only");
      const dot = svg(
        "g",
        {
          class: classes.join(" "),
          tabindex: point === first ? 0 : -1,
          role: "button",
          "aria-label": pointLabel(point),
          "data-template-id": point.template_id,
          "data-cluster-id": point.cluster_id,
          "data-state": point.state,
          "data-x": point.x,
          "data-y": point.y,
        },
        svg("title", { text: point.template }),
        svg("circle", { class: "dot-mark", cx: (point.x * MAP_WIDTH).toFixed(1), cy: (point.y * MAP_HEIGHT).toFixed(1), r: r.toFixed(1) }),
      );
      const show = () => caption(point);
      dot.addEventListener("mouseenter", show);
      dot.addEventListener("focus", show);
      dot.addEventListener("click", () => openPoint(point));
      dot.addEventListener("keydown", (event) => {
        const at = state.order.indexOf(point);
        const moves = { ArrowRight: at + 1, ArrowDown: at + 1, ArrowLeft: at - 1, ArrowUp: at - 1, Home: 0, End: state.order.length - 1 };
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          openPoint(point);
        } else if (event.key in moves) {
          event.preventDefault();
          moveFocus(at, moves[event.key]);
        }
      });
      return dot;
    });
    const chart = svg(
      "svg",
      {
        id: "map-svg",
        class: "map-svg",
        viewBox: `0 0 ${MAP_WIDTH} ${MAP_HEIGHT}`,
        role: "group",
        "aria-labelledby": "map-title",
        "aria-describedby": "map-summary",
        "data-projection": map.projection,
      },
      svg("rect", { class: "map-ground", x: 0, y: 0, width: MAP_WIDTH, height: MAP_HEIGHT, rx: 6 }),
      ...dots,
    );
    box.replaceChildren(
      el("p", { id: "map-summary", class: "map-summary" }, summary),
      points.length ? chart : el("p", { class: "empty" }, "No events in this window."),
    );
    $("map-caption").replaceChildren();
  }

  function caption(point) {
    $("map-caption").replaceChildren(
      el("span", { class: `tag tag-${point.state}` }, stateLabel(point)),
      ` ${plural(point.canary_count, "event")} in the canary · ${number(point.baseline_count)} in the baseline · cluster `,
      el("code", {}, point.cluster_id),
      el("pre", { class: "template" }, point.template),
    );
  }

  /** A dot's drill-down: its canary cluster in the table (expanded, scrolled to, focused); a baseline-only
   *  event has none, so its drop (if it dropped) is shown instead, else its caption. */
  function openPoint(point) {
    caption(point);
    const opener = point.in_canary ? state.openers.get(point.cluster_id) : undefined;
    if (opener) {
      const body = opener(true);
      syncUrl();
      body.scrollIntoView({ block: "start" });
      body.querySelector(".expander").focus({ preventScroll: true });
      return;
    }
    const drop = [...document.querySelectorAll("#drop-list li")].find((li) => (li.dataset.templateIds || "").split(" ").includes(point.template_id));
    if (drop) {
      drop.scrollIntoView({ block: "start" });
      drop.focus({ preventScroll: true });
    }
  }

  /** The skip link's target: the strongest anomaly's dot, else the first drop, else the verdict. */
  function skipToAnomaly(event) {
    event.preventDefault();
    const first = state.order[0];
    const dot = first && first.state === "anomalous" ? document.querySelector(`#map g.dot[data-template-id="${first.template_id}"]`) : null;
    const target = dot || document.querySelector("#drop-list li") || $("verdict");
    target.scrollIntoView({ block: "center" });
    target.focus({ preventScroll: true });
  }

  // -- clusters: the canary's, counted over the verdict's scope ---------------------------------------

  /** The anomalies that name this cluster (by cluster id or by one of its templates' ids). */
  function anomaliesOf(cluster, verdict) {
    const ids = new Set(cluster.templates.map((t) => t.template_id));
    return verdict.anomalies.filter((a) => a.cluster_id === cluster.cluster_id || a.template_ids.some((id) => ids.has(id)));
  }

  /** What the verdict made of a cluster, from its templates' points: the same words as the map. */
  function rowStatus(cluster, anomalies, points, verdict) {
    if (anomalies.length) return { status: "anomalous" };
    if (!cluster.judged) {
      const why = verdict.reason_code === "anomalies" || verdict.reason_code === "no_anomaly" ? "no events in this window" : verdict.reason_code;
      return { status: "unjudged", label: `not judged: ${why}` };
    }
    const states = cluster.templates.map((t) => points.get(t.template_id)).filter(Boolean);
    const silenced = states.find((p) => p.state === "ignored");
    if (silenced) return { status: "ignored", label: stateLabel(silenced) };
    if (states.some((p) => p.state === "new")) return { status: "new", label: STATE_LABELS.new };
    return { status: "known", label: STATE_LABELS.known };
  }

  function finding(anomalies, row) {
    if (!anomalies.length) return el("span", { class: `tag tag-${row.status}` }, row.label);
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

  function renderClusters(map) {
    const table = $("clusters");
    for (const body of table.querySelectorAll("tbody")) body.remove();
    state.openers.clear();
    const verdict = map.verdict;
    const points = new Map(map.points.map((p) => [p.template_id, p]));
    const rows = map.clusters.map((cluster) => {
      const anomalies = anomaliesOf(cluster, verdict);
      return { cluster, anomalies, row: rowStatus(cluster, anomalies, points, verdict) };
    });
    const score = (r) => Math.max(-1, ...r.anomalies.map((a) => a.score));
    rows.sort((a, b) => score(b) - score(a) || b.cluster.judged - a.cluster.judged || b.cluster.count - a.cluster.count);
    if (!rows.length) {
      table.append(el("tbody", {}, el("tr", {}, el("td", { colspan: 5, class: "empty" }, "No events for this deployment."))));
    }
    rows.forEach(({ cluster, anomalies, row }, index) => {
      const anomalous = new Set(anomalies.flatMap((a) => a.template_ids));
      const detailId = `detail-${index}`;
      const detailCell = el("td", { colspan: 5 });
      const detail = el("tr", { class: "detail", id: detailId, hidden: true }, detailCell);
      const expander = el("button", { type: "button", class: "expander", "aria-expanded": "false", "aria-controls": detailId, title: "Show templates and examples" }, cluster.cluster_id);
      const setExpanded = (open) => {
        const wasOpen = expander.getAttribute("aria-expanded") === "true";
        expander.setAttribute("aria-expanded", String(open));
        detail.hidden = !open;
        if (open && !wasOpen) renderDetail(detailCell, cluster, anomalous, anomalies, points);
        else if (!open) detailCell.replaceChildren();
        if (open) state.expanded.add(cluster.cluster_id);
        else state.expanded.delete(cluster.cluster_id);
        return tbody;
      };
      expander.addEventListener("click", () => {
        setExpanded(expander.getAttribute("aria-expanded") !== "true");
        syncUrl();
      });
      const first = cluster.templates[0];
      const more = cluster.templates.length - 1;
      const actions = anomalies.length
        ? el("button", { type: "button", class: "judge", title: "Mark it not a risk, ignore it, or make it a priority" }, "Judge…")
        : null;
      if (actions) {
        actions.addEventListener("click", () => {
          setExpanded(true);
          syncUrl();
          const radio = detailCell.querySelector(".judge-form input[type=radio]");
          if (radio) radio.focus();
        });
      }
      const events = cluster.total !== cluster.count ? [number(cluster.count), el("span", { class: "total", title: "events of all time" }, ` of ${number(cluster.total)}`)] : [number(cluster.count)];
      const summary = el(
        "tr",
        { class: "summary" },
        el("th", { scope: "row" }, expander),
        el("td", { class: "num" }, ...events),
        el("td", {}, el("pre", { class: "template" }, first ? first.template : ""), more > 0 ? el("p", { class: "more" }, `+ ${plural(more, "more template")}`) : null),
        el("td", {}, finding(anomalies, row)),
        el("td", {}, actions),
      );
      const tbody = el("tbody", { class: `cluster cluster-${row.status}`, "data-status": row.status, "data-cluster-id": cluster.cluster_id }, summary, detail);
      table.append(tbody);
      state.openers.set(cluster.cluster_id, setExpanded);
      if (state.expanded.has(cluster.cluster_id)) setExpanded(true);
    });
    const shown = new Set(map.clusters.map((c) => c.cluster_id));
    for (const id of state.expanded) if (!shown.has(id)) state.expanded.delete(id);
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
  // Framework frames, as logcanary.engine.stacktrace tells them apart from application frames.
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

  /** "hosts a, b" inline; past HOSTS_INLINE a toggle "N hosts" that shows the whole list. ``capped``: more hosts
   *  logged it than the engine keeps (64), so the count is a floor ("64+ hosts"), never a count. */
  function hostsOf(hosts, capped = false) {
    if (!hosts.length) return { inline: "no host", list: null };
    if (hosts.length <= HOSTS_INLINE && !capped) return { inline: `hosts ${hosts.join(", ")}`, list: null };
    const list = el("ul", { class: "host-list", id: nextId("hosts"), hidden: true, "aria-label": "Hosts" }, ...hosts.map((h) => el("li", {}, h)));
    const label = `${number(hosts.length)}${capped ? "+" : ""} hosts`;
    const toggle = el("button", { type: "button", class: "hosts-toggle", "aria-expanded": "false", "aria-controls": list.id, title: capped ? "Show the hosts kept (the first 64)" : "Show every host" }, label);
    toggle.addEventListener("click", () => {
      const open = toggle.getAttribute("aria-expanded") !== "true";
      toggle.setAttribute("aria-expanded", String(open));
      list.hidden = !open;
    });
    return { inline: toggle, list };
  }


  function renderDetail(cell, cluster, anomalous, anomalies, points) {
    const items = cluster.templates.map((t) => {
      const hosts = hostsOf(t.hosts, t.hosts_capped);
      const point = points.get(t.template_id);
      const tag = anomalous.has(t.template_id)
        ? el("span", { class: "tag tag-anomalous" }, "anomalous")
        : point
          ? el("span", { class: `tag tag-${point.state}` }, stateLabel(point))
          : el("span", { class: "tag tag-unjudged" }, "no events in this window");
      const counted = t.count === t.total ? plural(t.count, "event") : `${plural(t.count, "event")} in the window (${number(t.total)} of all time)`;
      return el(
        "li",
        { class: anomalous.has(t.template_id) ? "tpl tpl-anomalous" : "tpl", "data-template-id": t.template_id },
        el(
          "p",
          { class: "tpl-head" },
          el("code", {}, t.template_id),
          ` · ${counted} · level `,
          el("span", { class: `level level-${t.level}` }, t.level),
          " · ",
          hosts.inline,
          " ",
          tag,
        ),
        hosts.list,
        el("pre", { class: "template" }, t.template),
        el("p", { class: "examples-title" }, `Examples (${t.examples.length})`),
        el("ol", { class: "examples" }, ...t.examples.map(example)),
      );
    });
    const text = new Map(cluster.templates.map((t) => [t.template_id, t.template]));
    const targets = new Map();
    for (const a of anomalies) for (const id of a.template_ids) targets.set(id, text.get(id) || a.template);
    if (!targets.size) for (const t of cluster.templates) if (points.has(t.template_id)) targets.set(t.template_id, t.template);
    if (!targets.size) for (const t of cluster.templates) targets.set(t.template_id, t.template);
    cell.replaceChildren(
      el("ul", { class: "templates", "aria-label": `Templates of cluster ${cluster.cluster_id}` }, ...items),
      judgeForm(`cluster ${cluster.cluster_id}`, targets, Object.keys(ACTIONS), standingRules([...cluster.templates.map((t) => t.template_id)]), anomalies.length > 0),
    );
  }

  /** The standing rules that name one of these templates and take part in this verdict (a not-a-risk rule only
   *  in its own canary). */
  function standingRules(templateIds) {
    const ids = new Set(templateIds);
    const canary = judgedCanary();
    const names = new Set([canary, ...identitiesOf(canary)]);
    return state.rules.filter((r) => ids.has(r.template_id) && (r.action !== "not_a_risk" || names.has(r.deployment)));
  }

  function identitiesOf(deployment) {
    const service = state.services.find((s) => s.service === $("service").value);
    const found = service ? service.deployments.find((d) => d.deployment === deployment) : null;
    return found ? found.identities : [];
  }

  /** A standing rule: what it says, who gave it and why, and its Undo (with who and why, for the trail). */
  function standingNote(rule) {
    const label = ACTIONS[rule.action] ? ACTIONS[rule.action].label : rule.action;
    const where = rule.action === "not_a_risk" ? ` in ${rule.deployment}` : "";
    const reason = el("input", { name: "undo-reason", maxlength: 4096, class: "undo-reason", placeholder: "why undo it" });
    const undo = el("button", { type: "button", class: "undo", "data-feedback-id": rule.id, title: `DELETE /v1/feedback/${rule.id}` }, "Undo");
    undo.addEventListener("click", () => undoRule(rule, undo, reason.value.trim()));
    return el(
      "div",
      { class: "standing", "data-feedback-id": rule.id, "data-action": rule.action },
      el("span", { class: `tag tag-action-${rule.action}` }, label),
      `${where}, by ${rule.author} at ${when(rule.created_at)} UTC${rule.reason ? `: “${rule.reason}”` : ""}. `,
      el("label", {}, "Undo because ", reason),
      " ",
      undo,
    );
  }

  /** The reviewer's judgement: not a risk, ignore or priority (``actions``), with author and reason. Nothing is
   *  chosen beforehand: a judgement is always a person's choice. Standing rules are shown with their Undo. */
  function judgeForm(what, targets, actions, standing, anomalous = true) {
    const canary = judgedCanary();
    const id = nextId("judge");
    const options = actions.map((action, index) =>
      el(
        "label",
        { class: "judge-option" },
        el("input", { type: "radio", name: `${id}-action`, value: action, required: index === 0 }),
        ` ${ACTIONS[action].label} `,
        el("span", { class: "judge-help" }, action === "not_a_risk" ? `accepted in canary ${canary} only; the next deployment is judged afresh` : ACTIONS[action].help),
      ),
    );
    const author = el("input", { name: "author", required: true, maxlength: 256, autocomplete: "name", value: localStorage.getItem(AUTHOR_KEY) || "" });
    const reason = el("input", { name: "reason", maxlength: 4096, class: "judge-reason" });
    const submit = el("button", { type: "submit", class: "judge-submit" }, "Save judgement");
    const form = el(
      "form",
      { class: "judge-form", "aria-label": `Judge ${what}` },
      standing.length ? el("div", { class: "standing-rules" }, el("p", { class: "judge-help" }, "Judged already:"), ...standing.map(standingNote)) : null,
      el("fieldset", {}, el("legend", {}, anomalous ? "Your judgement of this anomaly" : "Your judgement of this event"), ...options),
      el("div", { class: "judge-fields" }, el("label", {}, "Author ", author), el("label", {}, "Reason ", reason), submit),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const action = form.querySelector("input[type=radio]:checked").value;
      judge(what, targets, action, author.value.trim(), reason.value.trim(), submit);
    });
    return form;
  }

  /** The canary the verdict on the page judged (its canonical name, also in an analysis' view). */
  function judgedCanary() {
    return state.map && state.map.verdict ? state.map.verdict.canary : selection().canary;
  }

  function verdictNow() {
    const box = $("verdict");
    return { verdict: box.dataset.verdict || "", risk: Number(box.dataset.risk || 0) };
  }

  async function judge(what, targets, action, author, reason, button) {
    const { service } = selection();
    const canary = judgedCanary();
    if (author) localStorage.setItem(AUTHOR_KEY, author);
    button.disabled = true;
    try {
      for (const [id, template] of targets) {
        await api("v1/feedback", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ service, action, template, template_id: id, author: author || "unknown", reason, deployment: canary }),
        });
      }
      const said = { not_a_risk: `not a risk in ${canary}`, ignore: "ignored from now on", priority: "a priority from now on" }[action];
      showMessage(`The ${what} is ${said}. Undo it here or under History › Feedback rules.`, "info");
      state.pendingChange = { before: verdictNow(), what: `Saved: the ${what} is ${said}` };
      await load();
    } catch (error) {
      button.disabled = false;
      writeFailed(error, "judge it");
    }
  }

  async function undoRule(rule, button, reason) {
    button.disabled = true;
    const author = localStorage.getItem(AUTHOR_KEY) || "unknown";
    const label = ACTIONS[rule.action] ? ACTIONS[rule.action].label.toLowerCase() : rule.action;
    try {
      await api(`v1/feedback/${encodeURIComponent(rule.id)}?${new URLSearchParams({ author, reason })}`, { method: "DELETE" });
      showMessage(`Removed the ${label} rule of ${rule.author}: verdicts judge the event as before.`, "info");
      if (state.view === "verdict") state.pendingChange = { before: verdictNow(), what: `Undone: the ${label} rule of ${rule.author}` };
      await load();
    } catch (error) {
      button.disabled = false;
      writeFailed(error, "undo a rule");
    }
  }

  // -- history ------------------------------------------------------------------------------------

  const SPARK_WIDTH = 160;
  const SPARK_HEIGHT = 36;

  /** Risk over time as a small SVG line: the dashed line is the fail threshold (50). */
  function sparkline(analysis) {
    const samples = analysis.risk_history.map((s) => [Date.parse(s.at), s.risk]);
    const risks = samples.map(([, r]) => r);
    const label = samples.length
      ? `Risk over time: ${plural(samples.length, "evaluation")}, from ${number(risks[0])} to ${number(risks[risks.length - 1])}, highest ${number(Math.max(...risks))}`
      : "No risk recorded";
    const start = Date.parse(analysis.started_at);
    const end = Math.max(start + 1, ...samples.map(([t]) => t));
    const x = (t) => 2 + ((t - start) / (end - start)) * (SPARK_WIDTH - 4);
    const y = (risk) => SPARK_HEIGHT - 2 - (risk / 100) * (SPARK_HEIGHT - 4);
    const points = samples.map(([t, r]) => `${x(t).toFixed(1)},${y(r).toFixed(1)}`).join(" ");
    const last = samples[samples.length - 1];
    return svg(
      "svg",
      { class: "spark", viewBox: `0 0 ${SPARK_WIDTH} ${SPARK_HEIGHT}`, width: SPARK_WIDTH, height: SPARK_HEIGHT, role: "img", "aria-label": label },
      svg("title", { text: label }),
      svg("line", { class: "spark-threshold", x1: 0, x2: SPARK_WIDTH, y1: y(50), y2: y(50) }),
      samples.length > 1 ? svg("polyline", { class: "spark-line", points }) : null,
      last ? svg("circle", { class: `spark-end spark-end-${last[1] >= 50 ? "high" : "low"}`, cx: x(last[0]).toFixed(1), cy: y(last[1]).toFixed(1), r: 3 }) : null,
    );
  }

  /** The first lines of a template (the headline and the exception); the title attribute holds all of it. */
  function headOf(text, lines = 2) {
    const all = String(text).split("\n");
    return all.length > lines ? `${all.slice(0, lines).join("\n")}\n…` : String(text);
  }

  const actionLabel = (action) => (ACTIONS[action] ? ACTIONS[action].label : action);

  function renderHistory(data) {
    const analyses = $("analyses").querySelector("tbody");
    analyses.replaceChildren(
      ...data.analyses.map((a) => {
        const baseline = [a.baseline, a.history ? "earlier deployments" : null].filter(Boolean).join(" + ");
        const page = new URLSearchParams({ analysis: a.id });
        if (a.top_cluster_id) page.set("expand", a.top_cluster_id);
        return el(
          "tr",
          { "data-analysis-id": a.id, "data-verdict": a.verdict || "" },
          el("td", {}, el("a", { href: `ui?${page}`, class: "analysis-link", title: "The verdict this analysis published" }, el("code", {}, a.id.slice(0, 12)))),
          el("td", {}, `${a.canary} vs ${baseline}`),
          el(
            "td",
            { class: "release-cell" },
            a.release ? el("a", { href: `ui?${new URLSearchParams({ view: "release", release: a.release })}` }, a.release) : "—",
            a.environment ? ` (${a.environment})` : "",
          ),
          el("td", {}, when(a.started_at)),
          el("td", {}, a.status),
          el("td", {}, a.verdict ? el("span", { class: `tag tag-verdict-${a.verdict}` }, a.verdict) : "—"),
          el("td", { class: "num" }, a.risk === null || a.risk === undefined ? "—" : number(a.risk)),
          el("td", {}, sparkline(a)),
        );
      }),
    );
    if (!data.analyses.length) analyses.append(el("tr", {}, el("td", { colspan: 8, class: "empty" }, "No analysis of this service (POST /v1/analyses starts one).")));

    const feedback = $("feedback").querySelector("tbody");
    feedback.replaceChildren(
      ...data.feedback.map((f) => {
        const reason = el("input", { name: "undo-reason", maxlength: 4096, class: "undo-reason", placeholder: "why undo it", "aria-label": "Why undo it" });
        const undo = el("button", { type: "button", class: "undo", "data-feedback-id": f.id, title: `DELETE /v1/feedback/${f.id}` }, "Undo");
        undo.addEventListener("click", () => undoRule(f, undo, reason.value.trim()));
        return el(
          "tr",
          { "data-feedback-id": f.id, "data-action": f.action },
          el("td", {}, when(f.created_at)),
          el("td", {}, f.author),
          el("td", {}, el("span", { class: `tag tag-action-${f.action}` }, actionLabel(f.action))),
          el("td", {}, f.action === "not_a_risk" ? `canary ${f.deployment}` : "every deployment"),
          el("td", {}, el("pre", { class: "template template-short", title: f.template }, headOf(f.template))),
          el("td", {}, f.reason || "—"),
          el("td", { class: "undo-cell" }, reason, undo),
        );
      }),
    );
    if (!data.feedback.length) feedback.append(el("tr", {}, el("td", { colspan: 7, class: "empty" }, "No feedback rule: judge an anomaly on the verdict page.")));

    const changes = $("changes").querySelector("tbody");
    const changeWords = { created: "created", changed: "changed", undone: "undone" };
    changes.replaceChildren(
      ...(data.feedback_changes || []).map((c) => {
        const scope = (rule) => (rule.action === "not_a_risk" ? ` in ${rule.deployment}` : "");
        const judgement = c.previous && c.previous.action !== c.rule.action
          ? `${actionLabel(c.previous.action)}${scope(c.previous)} → ${actionLabel(c.rule.action)}${scope(c.rule)}`
          : `${actionLabel(c.rule.action)}${scope(c.rule)}`;
        return el(
          "tr",
          { "data-change-id": c.id, "data-change": c.change, "data-feedback-id": c.rule.id },
          el("td", {}, when(c.at)),
          el("td", {}, c.author),
          el("td", {}, el("span", { class: `tag tag-change-${c.change}` }, changeWords[c.change] || c.change)),
          el("td", {}, judgement),
          el("td", {}, el("pre", { class: "template template-short", title: c.rule.template }, headOf(c.rule.template))),
          el("td", {}, c.reason || "—"),
        );
      }),
    );
    if (!(data.feedback_changes || []).length) changes.append(el("tr", {}, el("td", { colspan: 6, class: "empty" }, "No rule was created, changed or undone yet.")));

    $("marks").replaceChildren(
      ...data.marks.map((m) =>
        el("li", {}, el("strong", {}, m.deployment), m.bad ? " marked bad" : " let back into history", ` by ${m.author} at ${when(m.marked_at)} UTC`, m.reason ? `: ${m.reason}` : ""),
      ),
    );
    if (!data.marks.length) $("marks").append(el("li", { class: "empty" }, "No deployment marked."));
  }

  // -- loading ------------------------------------------------------------------------------------

  async function load() {
    const ticket = ++state.ticket;
    syncUrl();
    document.body.dataset.loaded = "false";
    try {
      if (state.view === "history") await loadHistory(ticket);
      else await loadVerdict(ticket);
      if (ticket !== state.ticket) return; // a newer choice is loading
      if ($("message").dataset.kind === "error") showMessage("");
      syncUrl();
      document.body.dataset.loaded = "true";
    } catch (error) {
      if (ticket !== state.ticket) return;
      readFailed(error);
      document.body.dataset.loaded = "error";
    }
  }

  async function loadHistory(ticket) {
    const { service } = selection();
    if (!service) {
      renderHistory({ analyses: [], feedback: [], feedback_changes: [], marks: [] });
      return;
    }
    const data = await api(`v1/services/${encodeURIComponent(service)}/history`);
    if (ticket === state.ticket) renderHistory(data);
  }

  async function loadVerdict(ticket) {
    const question = selection();
    const { service, canary } = question;
    if (!service || (!canary && !state.analysis)) {
      $("verdict").replaceChildren(el("p", { class: "verdict-name" }, "No events yet"), el("p", { class: "reason" }, "Send log events to POST /v1/events or through Kafka."));
      renderMap({ points: [], clusters: [], omitted: 0, projection: "", verdict: null });
      renderClusters({ points: [], clusters: [], verdict: { anomalies: [], reason_code: "" } });
      $("drops").hidden = true;
      return;
    }
    const query = new URLSearchParams();
    if (state.analysis) {
      query.set("analysis", state.analysis);
    } else {
      query.set("canary", canary);
      query.set("window", question.window);
      if (question.baseline) query.set("baseline", question.baseline);
      if (question.history && question.baseline) query.set("history", "true");
      if (question.sensitivity) query.set("sensitivity", question.sensitivity);
      if (question.until) query.set("until", question.until);
    }
    const base = `v1/services/${encodeURIComponent(service)}`;
    const [map, rules] = await Promise.all([api(`${base}/map?${query}`), api(`v1/feedback?${new URLSearchParams({ service })}`)]);
    if (ticket !== state.ticket) return;
    state.rules = rules;
    if (map.analysis && $("canary").value !== map.verdict.canary) {
      const control = map.verdict.baseline.find((b) => !b.startsWith("history:"));
      fillDeployments(map.verdict.canary, control || "");
    }
    renderAnalysisNote(map.analysis);
    const windowLabel = map.analysis ? "of the analysis" : question.until ? `${question.window} up to ${when(new Date(question.until).toISOString())} UTC` : question.window;
    renderVerdict(map.verdict, windowLabel, map);
    renderMap(map);
    renderDrops(map.verdict, map);
    renderClusters(map);
    announceChange(map.verdict);
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

  /** A change of any control leaves an analysis' verdict (or a fixed window) for the live one. */
  function leaveAnalysis() {
    state.until = null;
    if (!state.analysis) return;
    state.analysis = null;
    state.analysisRecord = null;
    fillJudging(GATE_WINDOW, $("sensitivity").value);
  }

  /** The baseline asked for by the URL: a deployment, "" for earlier deployments, both, or null (the default). */
  function baselineOf(params) {
    const history = params.get("history");
    const wanted = params.get("baseline");
    const both = history === "1" || history === "true";
    if (wanted) return both ? `${wanted}${HISTORY}` : wanted;
    if (both || params.has("baseline")) return "";
    return null;
  }

  async function start() {
    const params = new URLSearchParams(location.search);
    for (const id of params.getAll("expand")) state.expanded.add(id);
    setView(params.get("view") === "history" ? "history" : "verdict");
    state.analysis = params.get("analysis");
    state.until = state.analysis ? null : params.get("until");
    const token = $("token");
    token.value = sessionStorage.getItem(TOKEN_KEY) || "";
    token.addEventListener("change", () => {
      if (token.value.trim()) sessionStorage.setItem(TOKEN_KEY, token.value.trim());
      else sessionStorage.removeItem(TOKEN_KEY);
      if (state.needsToken) location.reload(); // the page could not read anything yet: start again
    });
    $("skip").addEventListener("click", skipToAnomaly);
    $("pick").addEventListener("submit", (event) => {
      event.preventDefault();
      showMessage("");
      load();
    });
    $("service").addEventListener("change", () => {
      state.expanded.clear();
      leaveAnalysis();
      fillDeployments("", null);
      load();
    });
    $("canary").addEventListener("change", () => {
      state.expanded.clear();
      leaveAnalysis();
      if ($("baseline").value === $("canary").value) fillDeployments($("canary").value, null);
      load();
    });
    for (const id of ["baseline", "window", "sensitivity"]) {
      $(id).addEventListener("change", () => {
        if (id !== "window" || $("window").value !== "analysis") leaveAnalysis();
        load();
      });
    }
    let analysis = null;
    try {
      state.services = await api("v1/services");
      if (state.analysis) analysis = await api(`v1/analyses/${encodeURIComponent(state.analysis)}`);
    } catch (error) {
      readFailed(error);
      document.body.dataset.loaded = "error";
      return;
    }
    state.analysisRecord = analysis;
    let notes;
    if (analysis && state.view === "verdict") {
      // The analysis' own question: its service, canary, baseline and sensitivity, over its window.
      const live = liveQuestionOf(analysis);
      fillServices(analysis.service);
      fillDeployments(live.canary, live.baseline && live.history ? `${live.baseline}${HISTORY}` : live.baseline); // canonical names once loaded
      notes = [];
      fillJudging("analysis", analysis.sensitivity);
    } else {
      notes = [
        fillServices(params.get("service") || (analysis ? analysis.service : "")),
        fillDeployments(params.get("canary") || "", baselineOf(params)),
      ];
      fillJudging(params.get("window") || GATE_WINDOW, params.get("sensitivity") || "");
    }
    showMessage(notes.filter(Boolean).join(" "), "warning");
    await load();
  }

  start();
})();
