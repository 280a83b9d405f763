// logcanary's web page: reads the JSON API, renders the verdict, the cluster map, the canary's clusters, and a
// service's history (analyses, feedback rules). Log text is only ever put in the page with textContent / text
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
  const ACTIONS = {
    not_a_risk: { label: "Not a risk", help: "accepted in this canary only; the next deployment is judged afresh" },
    ignore: { label: "Ignore", help: "never an anomaly again, in any deployment of the service" },
    priority: { label: "Priority", help: "high risk: always fails a canary when seen" },
  };
  const $ = (id) => document.getElementById(id);
  const state = {
    services: [],
    expanded: new Set(),
    ticket: 0,
    needsToken: false,
    view: "verdict",
    analysis: null, // id of the analysis whose published verdict is shown, or null for the live verdict
    map: null,
    openers: new Map(), // cluster id -> opens its row in the table (returns the row's tbody)
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

  /** A failed write: ask for the token on 401, say it was refused on 403, else show the error. */
  function writeFailed(error, what) {
    if (error.status === 401) {
      showMessage(`An API token is needed to ${what}: enter it under “API token” and try again.`);
      $("token-box").open = true;
      $("token").focus();
    } else if (error.status === 403) {
      showMessage("The server refused the API token: check it under “API token”.");
    } else {
      showMessage(error.message);
    }
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

  function selection() {
    return {
      service: $("service").value,
      canary: $("canary").value,
      baseline: $("baseline").value,
      window: $("window").value || GATE_WINDOW,
      sensitivity: $("sensitivity").value,
    };
  }

  /** Mirrors the view and the choice (and the expanded clusters) in the query string, so the link can be shared. */
  function syncUrl() {
    const { service, canary, baseline, window, sensitivity } = selection();
    const query = new URLSearchParams();
    if (state.view === "history") {
      query.set("view", "history");
      if (service) query.set("service", service);
    } else if (state.analysis) {
      query.set("analysis", state.analysis);
    } else {
      if (service) query.set("service", service);
      if (canary) query.set("canary", canary);
      if (service) query.set("baseline", baseline);
      if (window !== GATE_WINDOW) query.set("window", window);
      if (sensitivity) query.set("sensitivity", sensitivity);
    }
    if (state.view === "verdict") for (const id of state.expanded) query.append("expand", id);
    history.replaceState(null, "", `${location.pathname}?${query}`);
    const service_ = service ? `&service=${encodeURIComponent(service)}` : "";
    $("nav-history").setAttribute("href", `ui?view=history${service_}`);
    $("nav-verdict").setAttribute("href", service ? `ui?service=${encodeURIComponent(service)}` : "ui");
    $("nav-history").toggleAttribute("aria-current", state.view === "history");
    $("nav-verdict").toggleAttribute("aria-current", state.view === "verdict");
  }

  function setView(view) {
    state.view = view;
    document.body.dataset.view = view;
    $("verdict-view").hidden = view !== "verdict";
    $("history-view").hidden = view !== "history";
    for (const label of document.querySelectorAll(".for-verdict")) label.hidden = view !== "verdict";
  }

  // -- verdict ------------------------------------------------------------------------------------

  function renderVerdict(verdict, windowLabel) {
    const box = $("verdict");
    box.className = `verdict verdict-${verdict.verdict}`;
    box.dataset.verdict = verdict.verdict;
    box.dataset.risk = String(verdict.risk);
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
          `sensitivity ${verdict.thresholds.sensitivity} · window ${windowLabel}`,
      ),
    );
  }

  /** In an analysis' view: says whose verdict this is, and links to the live one. */
  function renderAnalysisNote(analysis, verdict) {
    const note = $("analysis-note");
    note.hidden = !analysis;
    if (!analysis) {
      note.replaceChildren();
      return;
    }
    const span = analysis.finished_at
      ? `${analysis.status} at ${when(analysis.finished_at)} UTC`
      : `${analysis.status}, until ${when(analysis.ends_at)} UTC`;
    const live = new URLSearchParams({ service: verdict.service, canary: verdict.canary });
    const control = verdict.baseline.find((b) => !b.startsWith("history:"));
    live.set("baseline", control || "");
    note.replaceChildren(
      "The verdict analysis ",
      el("code", {}, analysis.id),
      ` published (${span}): what the deploy tool saw. `,
      el("a", { href: `ui?${live}`, id: "live-link" }, "Show the live verdict"),
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
          { class: "tpl tpl-anomalous", "data-cluster-id": a.cluster_id, "data-template-ids": a.template_ids.join(" "), tabindex: -1 },
          el("p", { class: "tpl-head" }, `${number(a.canary_count)} in canary · ${number(a.baseline_count)} in baseline · ${(a.ratio ?? 0).toFixed(2)}x its share · score ${number(a.score)}`),
          el("pre", { class: "template" }, a.template),
          el("ol", { class: "examples" }, ...a.baseline_examples.map(example)),
        ),
      ),
    );
  }

  // -- the cluster map ----------------------------------------------------------------------------

  const MAP_WIDTH = 960;
  const MAP_HEIGHT = 400;
  const R_MIN = 4;
  const R_MAX = 24;
  const STATE_LABELS = { anomalous: "anomalous", known: "known", vanished: "vanished (baseline only)", ignored: "ignored" };

  function pointLabel(point) {
    const what = point.state === "ignored" && point.feedback_action === "not_a_risk" ? "not a risk" : STATE_LABELS[point.state];
    const finding = point.finding ? ` (${point.finding}, score ${number(point.score)})` : "";
    return `${what}${finding}: ${firstLine(point.template)}. ${plural(point.canary_count, "event")} in the canary, ${number(point.baseline_count)} in the baseline.`;
  }

  function renderMap(map) {
    state.map = map;
    const box = $("map");
    const points = map.points;
    const volume = (p) => (p.in_canary ? p.canary_count : p.baseline_count);
    const most = Math.max(1, ...points.map(volume));
    const radius = (p) => R_MIN + (R_MAX - R_MIN) * Math.sqrt(volume(p) / most);
    const counts = { anomalous: 0, known: 0, vanished: 0, ignored: 0 };
    for (const p of points) counts[p.state] += 1;
    const summary = `${plural(points.length, "event type")}: ${counts.anomalous} anomalous, ${counts.known} known, ${counts.vanished} vanished, ${counts.ignored} ignored` +
      (map.omitted ? ` (${number(map.omitted)} small ones left out)` : "") +
      (map.verdict && map.verdict.anomaly_count > map.verdict.anomalies.length
        ? `. The verdict lists its ${map.verdict.anomalies.length} strongest of ${number(map.verdict.anomaly_count)} anomalies: only those are red.`
        : "");
    // Drawn largest first so small dots stay on top; anomalous ones last, highest score on top.
    const order = [...points].sort((a, b) => {
      const red = (a.state === "anomalous") - (b.state === "anomalous");
      if (red) return red;
      if (a.state === "anomalous") return (a.score ?? 0) - (b.score ?? 0);
      return radius(b) - radius(a);
    });
    const dots = order.map((point) => {
      const r = radius(point);
      const classes = ["dot", `dot-${point.state}`];
      if (!point.in_canary) classes.push("dot-baseline-only");
      const dot = svg(
        "g",
        {
          class: classes.join(" "),
          tabindex: 0,
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
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          openPoint(point);
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
      el("span", { class: `tag tag-${point.state === "anomalous" ? "anomalous" : point.state === "ignored" ? "ignored" : "known"}` },
        point.state === "ignored" && point.feedback_action === "not_a_risk" ? "not a risk" : STATE_LABELS[point.state]),
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

  function renderDetail(cell, cluster, anomalous, anomalies) {
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
    cell.replaceChildren(
      el("ul", { class: "templates", "aria-label": `Templates of cluster ${cluster.cluster_id}` }, ...items),
      judgeForm(cluster, anomalies),
    );
  }

  /** The reviewer's judgement of a cluster: not a risk, ignore or priority, with author and reason. */
  function judgeForm(cluster, anomalies) {
    const canary = judgedCanary();
    const chosen = anomalies.length ? "not_a_risk" : "priority";
    const id = nextId("judge");
    const options = Object.entries(ACTIONS).map(([action, { label, help }]) =>
      el(
        "label",
        { class: "judge-option" },
        el("input", { type: "radio", name: `${id}-action`, value: action, checked: action === chosen }),
        ` ${label} `,
        el("span", { class: "judge-help" }, action === "not_a_risk" ? `accepted in canary ${canary} only; the next deployment is judged afresh` : help),
      ),
    );
    const author = el("input", { name: "author", required: true, maxlength: 256, autocomplete: "name", value: localStorage.getItem(AUTHOR_KEY) || "" });
    const reason = el("input", { name: "reason", maxlength: 4096, class: "judge-reason" });
    const submit = el("button", { type: "submit", class: "judge-submit" }, "Save judgement");
    const form = el(
      "form",
      { class: "judge-form", "aria-label": `Judge cluster ${cluster.cluster_id}` },
      el("fieldset", {}, el("legend", {}, anomalies.length ? "Your judgement of this anomaly" : "Your judgement of this event"), ...options),
      el("div", { class: "judge-fields" }, el("label", {}, "Author ", author), el("label", {}, "Reason ", reason), submit),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const action = form.querySelector("input[type=radio]:checked").value;
      judge(cluster, anomalies, action, author.value.trim(), reason.value.trim(), submit);
    });
    return form;
  }

  /** The canary the verdict on the page judged (its canonical name, also in an analysis' view). */
  function judgedCanary() {
    return state.map && state.map.verdict ? state.map.verdict.canary : selection().canary;
  }

  async function judge(cluster, anomalies, action, author, reason, button) {
    const { service } = selection();
    const canary = judgedCanary();
    const text = new Map(cluster.templates.map((t) => [t.template_id, t.template]));
    const targets = new Map();
    for (const a of anomalies) for (const id of a.template_ids) targets.set(id, text.get(id) || a.template);
    if (!targets.size) for (const t of cluster.templates) targets.set(t.template_id, t.template);
    if (author) localStorage.setItem(AUTHOR_KEY, author);
    button.disabled = true;
    const created = [];
    try {
      for (const [id, template] of targets) {
        const feedback = await api("v1/feedback", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ service, action, template, template_id: id, author: author || "unknown", reason, deployment: canary }),
        });
        created.push(feedback.id);
      }
      const what = { not_a_risk: `not a risk in ${canary}`, ignore: "ignored from now on", priority: "a priority from now on" }[action];
      showMessage(`Cluster ${cluster.cluster_id} is ${what}. Undo it under History › Feedback rules.`, "info");
      await load();
    } catch (error) {
      button.disabled = false;
      writeFailed(error, "judge a cluster");
    }
  }

  function renderClusters(clusters, verdict) {
    const table = $("clusters");
    for (const body of table.querySelectorAll("tbody")) body.remove();
    state.openers.clear();
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
        const wasOpen = expander.getAttribute("aria-expanded") === "true";
        expander.setAttribute("aria-expanded", String(open));
        detail.hidden = !open;
        if (open && !wasOpen) renderDetail(detailCell, cluster, anomalous, anomalies);
        else if (!open) detailCell.replaceChildren();
        if (open) state.expanded.add(cluster.cluster_id);
        else state.expanded.delete(cluster.cluster_id);
        return tbody;
      };
      expander.addEventListener("click", () => {
        setExpanded(expander.getAttribute("aria-expanded") !== "true");
        syncUrl();
      });
      const more = cluster.templates.length - 1;
      const first = cluster.templates[0];
      const actions = anomalies.length
        ? el("button", { type: "button", class: "judge", title: "Mark it not a risk, ignore it, or make it a priority" }, "Judge…")
        : null;
      if (actions) {
        actions.addEventListener("click", () => {
          setExpanded(true);
          syncUrl();
          const radio = detailCell.querySelector("input[type=radio]:checked");
          if (radio) radio.focus();
        });
      }
      const row = el(
        "tr",
        { class: "summary" },
        el("th", { scope: "row" }, expander),
        el("td", { class: "num" }, number(cluster.count)),
        el("td", {}, el("pre", { class: "template" }, first ? first.template : ""), more > 0 ? el("p", { class: "more" }, `+ ${plural(more, "more template")}`) : null),
        el("td", {}, finding(anomalies, suppressed.has(cluster.cluster_id))),
        el("td", {}, actions),
      );
      const tbody = el("tbody", { class: `cluster cluster-${status}`, "data-status": status, "data-cluster-id": cluster.cluster_id }, row, detail);
      table.append(tbody);
      state.openers.set(cluster.cluster_id, setExpanded);
      if (state.expanded.has(cluster.cluster_id)) setExpanded(true);
    });
    const shown = new Set(clusters.map((c) => c.cluster_id));
    for (const id of state.expanded) if (!shown.has(id)) state.expanded.delete(id);
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

  function renderHistory(data) {
    const analyses = $("analyses").querySelector("tbody");
    analyses.replaceChildren(
      ...data.analyses.map((a) => {
        const baseline = [a.baseline, a.history ? "earlier deployments" : null].filter(Boolean).join(" + ");
        return el(
          "tr",
          { "data-analysis-id": a.id, "data-verdict": a.verdict || "" },
          el("td", {}, el("a", { href: `ui?analysis=${encodeURIComponent(a.id)}`, class: "analysis-link", title: "The verdict this analysis published" }, el("code", {}, a.id.slice(0, 12)))),
          el("td", {}, `${a.canary} vs ${baseline}`),
          el("td", {}, when(a.started_at)),
          el("td", {}, a.status),
          el("td", {}, a.verdict ? el("span", { class: `tag tag-verdict-${a.verdict}` }, a.verdict) : "—"),
          el("td", { class: "num" }, a.risk === null || a.risk === undefined ? "—" : number(a.risk)),
          el("td", {}, sparkline(a)),
        );
      }),
    );
    if (!data.analyses.length) analyses.append(el("tr", {}, el("td", { colspan: 7, class: "empty" }, "No analysis of this service (POST /v1/analyses starts one).")));

    const feedback = $("feedback").querySelector("tbody");
    feedback.replaceChildren(
      ...data.feedback.map((f) => {
        const undo = el("button", { type: "button", class: "undo", "data-feedback-id": f.id, title: `DELETE /v1/feedback/${f.id}` }, "Undo");
        undo.addEventListener("click", () => undoRule(f, undo));
        return el(
          "tr",
          { "data-feedback-id": f.id, "data-action": f.action },
          el("td", {}, when(f.created_at)),
          el("td", {}, f.author),
          el("td", {}, el("span", { class: `tag tag-action-${f.action}` }, ACTIONS[f.action] ? ACTIONS[f.action].label : f.action)),
          el("td", {}, f.action === "not_a_risk" ? `canary ${f.deployment}` : "every deployment"),
          el("td", {}, el("pre", { class: "template template-short", title: f.template }, headOf(f.template))),
          el("td", {}, f.reason || "—"),
          el("td", {}, undo),
        );
      }),
    );
    if (!data.feedback.length) feedback.append(el("tr", {}, el("td", { colspan: 7, class: "empty" }, "No feedback rule: judge an anomaly on the verdict page.")));

    $("marks").replaceChildren(
      ...data.marks.map((m) =>
        el("li", {}, el("strong", {}, m.deployment), m.bad ? " marked bad" : " let back into history", ` by ${m.author} at ${when(m.marked_at)} UTC`, m.reason ? `: ${m.reason}` : ""),
      ),
    );
    if (!data.marks.length) $("marks").append(el("li", { class: "empty" }, "No deployment marked."));
  }

  async function undoRule(rule, button) {
    button.disabled = true;
    try {
      await api(`v1/feedback/${encodeURIComponent(rule.id)}`, { method: "DELETE" });
      showMessage(`Removed the ${ACTIONS[rule.action] ? ACTIONS[rule.action].label.toLowerCase() : rule.action} rule of ${rule.author}: verdicts judge the event as before.`, "info");
      await load();
    } catch (error) {
      button.disabled = false;
      writeFailed(error, "undo a rule");
    }
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
      renderHistory({ analyses: [], feedback: [], marks: [] });
      return;
    }
    const data = await api(`v1/services/${encodeURIComponent(service)}/history`);
    if (ticket === state.ticket) renderHistory(data);
  }

  async function loadVerdict(ticket) {
    const { service, canary, baseline, window, sensitivity } = selection();
    if (!service || !canary) {
      $("verdict").replaceChildren(el("p", { class: "verdict-name" }, "No events yet"), el("p", { class: "reason" }, "Send log events to POST /v1/events or through Kafka."));
      renderMap({ points: [], omitted: 0, projection: "" });
      renderClusters([], { anomalies: [], suppressed: [] });
      return;
    }
    const query = new URLSearchParams();
    if (state.analysis) {
      query.set("analysis", state.analysis);
    } else {
      query.set("canary", canary);
      query.set("window", window);
      if (baseline) query.set("baseline", baseline);
      if (sensitivity) query.set("sensitivity", sensitivity);
    }
    const base = `v1/services/${encodeURIComponent(service)}`;
    const map = await api(`${base}/map?${query}`);
    const clusters = await api(`${base}/clusters?${new URLSearchParams({ deployment: map.verdict.canary })}`);
    if (ticket !== state.ticket) return;
    if (map.analysis && $("canary").value !== map.verdict.canary) {
      const control = map.verdict.baseline.find((b) => !b.startsWith("history:"));
      fillDeployments(map.verdict.canary, control || "");
    }
    renderAnalysisNote(map.analysis, map.verdict);
    renderVerdict(map.verdict, map.analysis ? "of the analysis" : window);
    renderMap(map);
    renderDrops(map.verdict);
    renderClusters(clusters, map.verdict);
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

  /** A change of any control leaves an analysis' verdict for the live one. */
  function leaveAnalysis() {
    if (!state.analysis) return;
    state.analysis = null;
    fillJudging(GATE_WINDOW, $("sensitivity").value);
  }

  async function start() {
    const params = new URLSearchParams(location.search);
    for (const id of params.getAll("expand")) state.expanded.add(id);
    setView(params.get("view") === "history" ? "history" : "verdict");
    state.analysis = state.view === "verdict" ? params.get("analysis") : null;
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
    let notes;
    if (analysis) {
      // The analysis' own question: its service, canary, control baseline and sensitivity, over its window.
      fillServices(analysis.service);
      fillDeployments(analysis.canary.deployment, analysis.baseline.deployment || ""); // set to canonical names once loaded
      notes = [];
      fillJudging("analysis", analysis.sensitivity);
    } else {
      notes = [
        fillServices(params.get("service") || ""),
        fillDeployments(params.get("canary") || "", params.has("baseline") ? params.get("baseline") : null),
      ];
      fillJudging(params.get("window") || GATE_WINDOW, params.get("sensitivity") || "");
    }
    showMessage(notes.filter(Boolean).join(" "), "warning");
    await load();
  }

  start();
})();
