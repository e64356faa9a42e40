// The devserver's live tail. Plain browser JavaScript, no build step, no
// external files. Log lines are untrusted: they only ever reach the page as
// textContent, never as HTML.
"use strict";

(() => {
  const LEVELS = ["debug", "info", "warning", "error", "critical"];
  const BUCKET = {
    trace: "debug", debug: "debug", fine: "debug",
    info: "info", notice: "info",
    warn: "warning", warning: "warning",
    err: "error", error: "error",
    critical: "critical", severe: "critical", fatal: "critical", alert: "critical",
    emergency: "critical", panic: "critical",
  };
  const $ = (id) => document.getElementById(id);
  const box = $("lines");
  const state = {
    limit: 1000,          // lines kept; the server says how many in its hello
    lastSeq: -1,          // the newest line number received (to skip repeats)
    instance: null,       // which server numbered them
    received: 0,          // lines the server accepted since the page opened
    skipped: 0,           // of those, lines the page never got (it was too slow)
    counts: Object.fromEntries(LEVELS.map((l) => [l, 0])),
    levels: new Set(LEVELS),
    app: "",
    host: "",
    search: "",
    paused: false,
    held: [],             // rows that arrived while paused
    heldDropped: 0,
    unseen: 0,            // rows added while scrolled up
    apps: new Set(),
    hosts: new Set(),
    perSecond: new Array(60).fill(0),
    second: Math.floor(Date.now() / 1000),
  };

  // -- lines to rows

  const bucketOf = (level) => BUCKET[String(level ?? "").toLowerCase()] || "info";

  const pad = (n, w) => String(n).padStart(w, "0");
  function clock(ms) {
    const d = new Date(ms);
    if (Number.isNaN(d.getTime())) return "--:--:--.---";
    return `${pad(d.getHours(), 2)}:${pad(d.getMinutes(), 2)}:${pad(d.getSeconds(), 2)}.${pad(d.getMilliseconds(), 3)}`;
  }

  function parseMeta(meta) {
    if (typeof meta !== "string") return meta;
    try {
      const parsed = JSON.parse(meta);
      return parsed && typeof parsed === "object" ? parsed : meta;
    } catch {
      return meta;
    }
  }

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // Every kept line is an entry (plain data, at most state.limit of them);
  // only the newest matching entries near the view have a row in the page.
  // A flood of lines then costs a few dozen rows, not thousands.
  const entries = [];
  // Rows in the page while following the newest: a screenful and half as much
  // again (at least 40), kept up to date as the view resizes. Each row costs
  // the browser work whenever lines arrive, seen or not.
  const ROW_PX = 18;
  let viewRows = 40;
  let windowSize = viewRows;
  new ResizeObserver(([entry]) => {
    viewRows = Math.max(40, Math.ceil((1.5 * entry.contentRect.height) / ROW_PX));
  }).observe(box);

  function makeEntry(line, batch, seq) {
    return {
      line, batch, seq,
      text: String(line.line ?? ""),
      bucket: bucketOf(line.level),
      app: String(line.app ?? line.file ?? ""),
      host: String(batch.q.hostname ?? ""),
      meta: parseMeta(line.meta),
      haystack: null,
      row: null,
    };
  }

  function rowOf(e) {
    if (e.row) return e.row;
    const { line, batch, text, app, host } = e;
    const row = el("div", `row lvl-${e.bucket}`);
    row.tabIndex = -1;
    row.setAttribute("aria-expanded", "false");
    row.dataset.seq = e.seq;
    const ts = typeof line.timestamp === "number" ? line.timestamp : batch.t;
    const level = line.level == null ? "-" : String(line.level);
    row.append(el("span", "time", clock(ts)), el("span", "level", level));
    const source = el("span", "source");
    if (host) source.append(el("span", "host", host), " ");
    if (app) source.append(el("span", "app", app));
    row.append(source);
    const multi = text.includes("\n");
    row.append(el(multi ? "pre" : "span", multi ? "text exc" : "text", text));
    row._entry = e;
    e.row = row;
    return row;
  }

  function details(row) {
    const { line, batch, meta } = row._entry;
    const part = (title, value) => {
      const section = el("section");
      section.append(el("h2", "", title), el("pre", "", JSON.stringify(value, null, 2)));
      return section;
    };
    const box = el("div", "details");
    box.append(part("meta", meta ?? {}));
    const request = { ...batch.q };
    for (const key of ["env", "app", "file", "level", "timestamp"]) {
      if (line[key] !== undefined) request[key] = line[key];
    }
    request.received = new Date(batch.t).toISOString();
    box.append(part("request and line fields", request));
    box.addEventListener("click", (event) => event.stopPropagation());
    return box;
  }

  function toggle(row) {
    const open = row.getAttribute("aria-expanded") === "true";
    row.setAttribute("aria-expanded", String(!open));
    if (open) row.querySelector(".details")?.remove();
    else row.append(details(row));
  }

  // -- filters

  function matches(e) {
    return state.levels.has(e.bucket)
      && (!state.app || e.app === state.app)
      && (!state.host || e.host === state.host)
      && (!state.search || haystack(e).includes(state.search));
  }

  // What the search looks in, built the first time a search needs it.
  function haystack(e) {
    if (e.haystack === null) {
      const meta = e.meta == null ? "" : JSON.stringify(e.meta);
      e.haystack = [e.text, e.app, e.host, meta].join("\n").toLowerCase();
    }
    return e.haystack;
  }

  // The page from the entries: the newest windowSize matching ones, at the bottom.
  function rebuild() {
    paint();  // lines not drawn yet join the entries first
    const matching = entries.filter(matches);
    box.replaceChildren(...matching.slice(-windowSize).map(rowOf));
    box.scrollTop = box.scrollHeight;
    following = true;
    state.unseen = 0;
    $("jump").hidden = true;
    updateShown(matching.length);
  }

  function applyFilters() {
    windowSize = viewRows;
    rebuild();
  }

  // Scrolled up to the oldest row shown: show older matching entries above it.
  function showOlder() {
    const first = box.firstElementChild;
    if (!first) return;
    const at = entries.indexOf(first._entry);
    const older = entries.slice(0, Math.max(0, at)).filter(matches).slice(-viewRows);
    if (!older.length) return;
    const height = box.scrollHeight;
    box.prepend(...older.map(rowOf));
    windowSize += older.length;
    box.scrollTop += box.scrollHeight - height;  // keep what the reader looks at in place
  }

  function updateShown(matching) {
    const n = matching ?? entries.filter(matches).length;
    setText($("shown"), entries.length
      ? `${n} of ${entries.length} kept lines match (the page keeps the newest ${state.limit})`
      : "no lines yet");
  }

  // Each list offers the first 200 names it sees: a line per random app name
  // must not grow the page without bound.
  const MAX_OPTIONS = 200;

  function addOption(select, set, value) {
    if (!value || set.has(value) || set.size >= MAX_OPTIONS) return;
    set.add(value);
    select.append(new Option(value, value));
  }

  // -- arriving lines

  const atBottom = () => box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  // Whether the view follows the newest line. Kept up to date by the scroll
  // handler, so adding lines never has to measure the page first (a forced
  // layout of every row, each time).
  let following = true;

  function render(added) {
    if (!added.length) return;
    if (added.length > state.limit) added = added.slice(-state.limit);  // evicted at once
    entries.push(...added);
    for (const gone of entries.splice(0, Math.max(0, entries.length - state.limit))) {
      gone.row?.remove();
      gone.row = null;
    }
    if (following) windowSize = viewRows;
    const fresh = added.filter(matches);
    const kept = fresh.slice(-windowSize);
    if (kept.length >= windowSize) {
      box.replaceChildren(...kept.map(rowOf));  // a flood: every row shown is new
    } else {
      box.append(...kept.map(rowOf));
      let extra = box.children.length - windowSize;
      while (extra-- > 0) {
        const row = box.firstElementChild;
        row._entry.row = null;  // rebuilt if the reader scrolls back to it
        row.remove();
      }
    }
    if (following) {
      box.scrollTop = box.scrollHeight;
    } else if (fresh.length) {
      state.unseen += fresh.length;
      $("jump").hidden = false;
      $("jump").textContent = `↓ ${state.unseen} newer`;
    }
    updateShown();
  }

  function onLines(event) {
    const data = JSON.parse(event.data);
    state.received += data.total;
    state.skipped += data.skipped;
    for (const [level, n] of Object.entries(data.counts)) state.counts[bucketOf(level)] += n;
    tick(data.total);
    const added = [];
    // Lines beyond the newest state.limit would be dropped at once: skip them.
    let over = data.batches.reduce((n, batch) => n + batch.lines.length, 0) - state.limit;
    for (const batch of data.batches) {
      batch.lines.forEach((line, i) => {
        const seq = batch.seq + i;
        if (seq <= state.lastSeq) return;
        state.lastSeq = seq;
        if (over-- > 0) return;
        const e = makeEntry(line, batch, seq);
        addOption($("app"), state.apps, e.app);
        addOption($("host"), state.hosts, e.host);
        added.push(e);
      });
    }
    if (state.paused) {
      state.held.push(...added);
      const extra = state.held.length - state.limit;
      if (extra > 0) {
        state.held.splice(0, extra);
        state.heldDropped += extra;
      }
    } else {
      pending.push(...added);
      if (pending.length > 2 * state.limit) pending.splice(0, pending.length - state.limit);
    }
    schedule();
  }

  // The page is drawn at most once a frame, whatever the number of events
  // since the last; while the tab is hidden no frame comes, so only the
  // counts and the kept lines go on (bounded) until it shows again.
  let pending = [];       // lines received since the last drawing, not yet in the page
  let frame = 0;

  function schedule() {
    if (!frame) frame = requestAnimationFrame(paint);
  }

  function paint() {
    if (frame) cancelAnimationFrame(frame);
    frame = 0;
    const added = pending;
    pending = [];
    render(added);
    updateCounts();
    updateStatus();
    // The chart moves with the lines, in the same frame: its first bar at once,
    // then at most once a second.
    if (added.length && (chartDrawn === 0 || performance.now() - chartAt >= 1000)) drawRate();
  }

  // -- counts, rate chart, status

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function updateCounts() {
    for (const level of LEVELS) setText($(`count-${level}`), state.counts[level].toLocaleString());
  }

  function tick(n) {
    const now = Math.floor(Date.now() / 1000);
    const gap = Math.min(now - state.second, 60);
    for (let i = 0; i < gap; i++) {
      state.perSecond.shift();
      state.perSecond.push(0);
    }
    state.second = now;
    state.perSecond[59] += n;
  }

  let chartDrawn = 0;     // lines in the chart as last drawn (0: blank)
  let chartAt = 0;        // when (performance.now())
  let chartColor = null;  // the theme's accent, looked up once per theme

  function drawRate(force) {
    tick(0);
    const total = state.perSecond.reduce((a, b) => a + b, 0);
    if (!force && total === 0 && chartDrawn === 0) return;  // blank, and it was
    chartDrawn = total;
    chartAt = performance.now();
    const canvas = $("rate");
    const ctx = canvas.getContext("2d");
    const { width, height } = canvas;
    chartColor ??= getComputedStyle(document.documentElement).getPropertyValue("--accent").trim();
    ctx.clearRect(0, 0, width, height);
    const max = Math.max(1, ...state.perSecond);
    const w = width / state.perSecond.length;
    ctx.fillStyle = chartColor || "#2f6fdf";
    state.perSecond.forEach((n, i) => {
      const h = Math.round((n / max) * (height - 2));
      if (h > 0) ctx.fillRect(i * w, height - h, Math.max(1, w - 1), h);
    });
    setText($("rate-text"), `${state.perSecond[58].toLocaleString()} lines/s`);
  }

  function updateStatus() {
    const parts = [];
    if (document.body.dataset.state === "reconnecting") parts.push("reconnecting…");
    else if (state.paused) parts.push(`paused, ${state.held.length} new lines held`);
    else parts.push("live");
    parts.push(`${state.received.toLocaleString()} lines received`);
    setText($("status"), parts.join(" · "));
    const missed = state.skipped + state.heldDropped;
    setText($("notice"), missed
      ? `${missed.toLocaleString()} lines came faster than the page shows them and were passed over (counts include them)`
      : "");
  }

  function setState(name) {
    document.body.dataset.state = name;
    updateStatus();
  }

  // -- controls

  function setPaused(paused) {
    paint();
    state.paused = paused;
    $("pause").setAttribute("aria-pressed", String(paused));
    $("pause").textContent = paused ? "Resume" : "Pause";
    if (!paused) {
      const rows = state.held;
      state.held = [];
      state.heldDropped = 0;
      render(rows);
    }
    setState(paused ? "paused" : "live");
  }

  function setTheme(theme) {
    document.documentElement.dataset.theme = theme;
    $("theme").textContent = theme === "dark" ? "Light" : "Dark";
    try { localStorage.setItem("devserver-theme", theme); } catch { /* private mode */ }
    chartColor = null;
    drawRate(true);
  }

  function currentTheme() {
    const chosen = document.documentElement.dataset.theme;
    if (chosen) return chosen;
    return matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  }

  function jumpToNewest() {
    windowSize = viewRows;
    rebuild();
  }

  function visibleRows() {
    return Array.from(box.children).filter((row) => !row.hidden);
  }

  function focusRow(row) {
    if (!row) return;
    for (const other of box.querySelectorAll('.row[tabindex="0"]')) other.tabIndex = -1;
    row.tabIndex = 0;
    row.focus();
  }

  function move(step) {
    const rows = visibleRows();
    if (!rows.length) return;
    const at = rows.indexOf(document.activeElement);
    const next = at < 0 ? (step > 0 ? 0 : rows.length - 1) : Math.min(rows.length - 1, Math.max(0, at + step));
    focusRow(rows[next]);
  }

  function setup() {
    const levels = $("levels");
    for (const level of LEVELS) {
      const button = el("button", `lvl-${level}`);
      button.type = "button";
      button.dataset.level = level;
      button.setAttribute("aria-pressed", "true");
      button.title = `Show or hide ${level} lines`;
      button.append(level, el("span", "count", "0"));
      button.lastChild.id = `count-${level}`;
      button.addEventListener("click", () => {
        const on = !state.levels.has(level);
        if (on) state.levels.add(level); else state.levels.delete(level);
        button.setAttribute("aria-pressed", String(on));
        applyFilters();
      });
      levels.append(button);
    }
    const params = new URLSearchParams(location.search);
    $("search").value = params.get("q") || "";
    state.search = $("search").value.toLowerCase();
    $("search").addEventListener("input", (event) => {
      state.search = event.target.value.toLowerCase();
      applyFilters();
    });
    $("app").addEventListener("change", (event) => { state.app = event.target.value; applyFilters(); });
    $("host").addEventListener("change", (event) => { state.host = event.target.value; applyFilters(); });
    $("pause").addEventListener("click", () => setPaused(!state.paused));
    $("theme").addEventListener("click", () => setTheme(currentTheme() === "dark" ? "light" : "dark"));
    $("jump").addEventListener("click", jumpToNewest);
    box.addEventListener("scroll", () => {
      following = atBottom();
      if (following) { state.unseen = 0; $("jump").hidden = true; }
      else if (box.scrollTop < 100) showOlder();
    });
    box.addEventListener("click", (event) => {
      const row = event.target.closest(".row");
      if (row && !getSelection().toString()) { focusRow(row); toggle(row); }
    });
    document.addEventListener("keydown", onKey);
    let saved = null;
    try { saved = localStorage.getItem("devserver-theme"); } catch { /* private mode */ }
    if (saved === "dark" || saved === "light") setTheme(saved);
    else $("theme").textContent = currentTheme() === "dark" ? "Light" : "Dark";
    // Between lines the chart slides every 2 s: a frame drawn costs the browser
    // more than the drawing, and each bar is still a second.
    setInterval(() => { if (performance.now() - chartAt >= 1900) drawRate(); }, 1000);
    matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
      chartColor = null;
      drawRate(true);
    });
    drawRate(true);
    updateCounts();
  }

  function onKey(event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    const typing = target.matches("input, select, textarea");
    if (target.id === "search" && event.key === "Escape") {
      target.value = "";
      state.search = "";
      applyFilters();
      target.blur();
      box.focus();
      return;
    }
    if (typing) return;
    const row = target.closest ? target.closest(".row") : null;
    switch (event.key) {
      case "/": event.preventDefault(); $("search").focus(); break;
      case "p": setPaused(!state.paused); break;
      case "t": setTheme(currentTheme() === "dark" ? "light" : "dark"); break;
      case "j": case "ArrowDown": event.preventDefault(); move(1); break;
      case "k": case "ArrowUp": event.preventDefault(); move(-1); break;
      case "End": case "G": event.preventDefault(); jumpToNewest(); focusRow(visibleRows().at(-1)); break;
      case "Home": event.preventDefault(); focusRow(visibleRows()[0]); break;
      case "Enter": case " ":
        if (row) { event.preventDefault(); toggle(row); }
        break;
      default: break;
    }
  }

  // -- the event stream

  function connect() {
    const source = new EventSource("/events");
    source.addEventListener("hello", (event) => {
      const hello = JSON.parse(event.data);
      if (hello.instance !== state.instance) {
        // Another server (restarted): its line numbers start again at 0.
        state.instance = hello.instance;
        state.lastSeq = -1;
      }
      state.limit = hello.limit;
      document.title = `devserver · ${hello.ingest_url}`;
      setState(state.paused ? "paused" : "live");
    });
    source.addEventListener("lines", onLines);
    source.addEventListener("error", () => setState("reconnecting"));
  }

  setup();
  connect();
})();
