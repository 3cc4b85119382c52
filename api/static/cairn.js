// Cairn's web UI: instant search, keyboard navigation, feedback, and the admin console's live view.
// Auth rides on the HttpOnly session cookie; every write sends X-Cairn-UI so a cross-site form cannot.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const UI_HEADERS = { "Content-Type": "application/json", "X-Cairn-UI": "1" };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else if (key === "html") node.innerHTML = value; // only server-escaped, highlighted HTML
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

// An error's detail: a sentence, or a 422's problems as `field: message` (the location after body/query).
function problemText(detail) {
  if (typeof detail === "string") return detail;
  if (!Array.isArray(detail)) return "";
  return detail.map((p) => (p.loc?.length > 1 ? `${p.loc.slice(1).join(".")}: ${p.msg}` : p.msg)).join("; ");
}

async function call(url, options = {}) {
  const res = await fetch(url, { credentials: "same-origin", ...options, headers: UI_HEADERS });
  if (res.status === 401) {
    location.href = "/signin?next=" + encodeURIComponent(location.pathname + location.search);
    throw new Error("signed out");
  }
  if (!res.ok) {  // the server's own message (e.g. why a change is refused) when it sent one
    const body = await res.json().catch(() => null);
    throw new Error(`${res.status} ${problemText(body?.detail) || res.statusText}`);
  }
  return res.status === 204 ? null : res.json();
}

// -- search page ---------------------------------------------------------------------------------

const FIELDS = ["q", "source", "kind", "language", "path"];
const FACET_NAMES = { source: "Source", kind: "Kind", language: "Language" };
const RECENT_MAX = 8;

function searchPage() {
  const form = $("#search"), box = $("#q"), list = $("#results"), status = $("#status");
  const params = new URLSearchParams(location.search);
  for (const name of FIELDS) if (params.has(name)) form.elements[name].value = params.get(name);
  let page = Math.max(1, Number(params.get("page")) || 1);
  let timer = null, seq = 0;
  const recent = recentSearches(form.dataset.recentKey);

  const value = (name) => form.elements[name].value.trim();
  function syncUrl() {
    const out = new URLSearchParams();
    for (const name of FIELDS) if (value(name)) out.set(name, value(name));
    if (page > 1) out.set("page", page);
    history.replaceState(null, "", out.toString() ? `/?${out}` : "/");
  }
  function showEmpty(empty) {
    $("#empty").hidden = !empty;
    $("#facets").hidden = empty;
    if (empty) { list.replaceChildren(); status.textContent = ""; $("#pager").hidden = true; renderRecent(recent, run); }
  }
  async function run(remember = false) {
    syncUrl();
    const query = value("q"), mine = ++seq;
    fitBox(box);
    if (!query) { showEmpty(true); return; }
    const one = (name) => (value(name) ? [value(name)] : []);
    const body = { query, page, path_prefix: value("path"), sources: one("source"), kinds: one("kind"),
                   languages: one("language") };
    status.textContent = "Searching…";
    try {
      const data = await call("/ui/search", { method: "POST", body: JSON.stringify(body) });
      if (mine !== seq) return;
      showEmpty(false);
      list.replaceChildren(...data.hits.map((hit) => renderHit(hit, data.query_id, query)));
      renderFacets(data.facets, form, () => { page = 1; run(true); });
      renderPager(data, (to) => { page = to; run(); window.scrollTo(0, 0); });
      status.textContent = statusText(data, query);
      if (remember) recent.add(searchState(form));
    } catch (err) {
      if (mine === seq) status.textContent = `Search failed: ${err.message}`;
    }
  }
  const later = () => { clearTimeout(timer); page = 1; timer = setTimeout(run, 250); };
  box.addEventListener("input", () => { fitBox(box); later(); });
  box.addEventListener("keydown", (e) => {  // Enter searches, Shift+Enter starts a new line
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); form.requestSubmit(); }
  });
  box.addEventListener("paste", () => setTimeout(() => fitBox(box)));
  addEventListener("resize", () => fitBox(box));  // a narrower window wraps more lines
  form.elements.path.addEventListener("input", later);
  form.addEventListener("submit", (e) => { e.preventDefault(); clearTimeout(timer); page = 1; run(true); });
  for (const button of document.querySelectorAll(".example")) {
    button.addEventListener("click", () => { box.value = button.dataset.query; page = 1; run(true); box.focus(); });
  }
  for (const link of document.querySelectorAll(".pick-source")) {
    link.addEventListener("click", (e) => { e.preventDefault(); form.elements.source.value = link.dataset.source;
                                           syncUrl(); box.focus(); });
  }
  document.addEventListener("keydown", (e) => onKey(e, box, list));
  run(Boolean(value("q")));
}

function statusText(data, full) {
  const n = data.hits.length, line = full.split("\n")[0];  // a pasted traceback: its first line
  const query = line.length > 80 || line !== full ? `${line.slice(0, 80)}…` : line;
  if (!n && data.abstained) return `Nothing relevant enough for “${query}”: try other words or an identifier.`;
  if (!n) return `No results for “${query}”`;
  const last = data.first + n - 1;
  if (data.first === 1 && !data.has_more) return `${n} result${n === 1 ? "" : "s"} for “${query}”`;
  return `Results ${data.first}–${last}${data.has_more ? "" : ` of ${last}`} for “${query}”`;
}

// The query box grows with what is typed or pasted (a traceback keeps its lines), up to a limit.
function fitBox(box) {
  box.style.height = "auto";
  box.style.height = `${Math.min(box.scrollHeight + 2, 320)}px`;
}

function searchState(form) {
  const out = {};
  for (const name of FIELDS) if (form.elements[name].value.trim()) out[name] = form.elements[name].value.trim();
  return out;
}

// Facet values counted by the index for this query under the caller's permissions; a click filters.
function renderFacets(facets, form, rerun) {
  const groups = Object.entries(FACET_NAMES).map(([field, label]) => {
    const chosen = form.elements[field].value;
    const values = facets[field];
    if (!values.length) return null;
    const items = values.map(([v, count]) => el("li", {}, el("button", {
      type: "button", class: "facet", "data-facet": field, "data-value": v, "aria-pressed": String(v === chosen),
      onclick: () => { form.elements[field].value = v === chosen ? "" : v; rerun(); } },
      el("span", { class: "facet-value", text: field === "kind" ? v.replace("_", " ") : v }),
      el("span", { class: "count", text: count.toLocaleString() }))));
    return el("section", { class: "facet-group", "data-facet": field },
      el("h2", { text: label }), el("ul", { class: "plain" }, ...items));
  });
  $("#facets").replaceChildren(...groups.filter(Boolean));
  // The filters in force (as asked, even with no match left), each with a button that drops it.
  const active = Object.keys(FACET_NAMES).filter((field) => form.elements[field].value).map((field) =>
    el("button", { type: "button", class: "active-filter", "data-facet": field,
                   "aria-label": `Remove filter ${field} ${form.elements[field].value}`,
                   onclick: () => { form.elements[field].value = ""; rerun(); } },
       `${field}: ${form.elements[field].value} ×`));
  $("#active-filters").replaceChildren(...active);
}

function renderPager(data, go) {
  const pager = $("#pager");
  pager.hidden = data.page === 1 && !data.has_more;
  $("#prev-page").disabled = data.page === 1;
  $("#next-page").disabled = !data.has_more;
  $("#prev-page").onclick = () => go(data.page - 1);
  $("#next-page").onclick = () => go(data.page + 1);
  $("#page-label").textContent = `Page ${data.page}`;
}

function renderHit(hit, queryId, query) {
  const [path, anchor] = hit.href.split("#");
  const href = `${path}?${new URLSearchParams({ q: query })}#${anchor}`;  // the document marks the query's terms
  const lines = hit.start_line === hit.end_line ? `L${hit.start_line}` : `L${hit.start_line}–${hit.end_line}`;
  const title = hit.title && hit.title !== hit.path ? hit.title : hit.path;
  const feedback = el("span", { class: "feedback", role: "group", "aria-label": "Was this result useful?" },
    el("button", { type: "button", class: "useful", text: "useful", onclick: (e) => sendFeedback(e, queryId, hit, true) }),
    el("button", { type: "button", class: "not-useful", text: "not useful",
                   onclick: (e) => sendFeedback(e, queryId, hit, false) }));
  const code = el("div", { class: "snippet hl" }, ...hit.lines.map((line) => el("div", { class: "sline" },
    el("span", { class: "ln", text: String(line.n) }), el("code", { html: line.html }))));
  return el("li", { class: "hit", tabindex: "-1", "data-id": hit.id, "data-href": href },
    el("div", { class: "hit-head" },
      el("span", { class: "source", text: hit.source }),
      el("a", { href, class: "open" }, title),
      hit.symbol ? el("span", { class: "symbol", text: hit.symbol }) : null,
      el("span", { class: "lines", text: lines }),
      el("span", { class: "tags" }, hit.language ? el("span", { class: "chip", text: hit.language }) : null,
         hit.kind !== "code" ? el("span", { class: "chip", text: hit.kind.replace("_", " ") }) : null),
      hit.url ? el("a", { class: "original", href: hit.url, rel: "noopener noreferrer", text: "original" }) : null,
      feedback),
    title !== hit.path ? el("p", { class: "subpath", text: hit.path }) : null,
    hit.lines.length ? code : null);
}

// Recent searches: in this browser's localStorage under an opaque per-user key, never on the server.
// Only searches whose source filter is one the caller may read now are shown.
function recentSearches(key) {
  const slot = `cairn.recent.${key}`;
  const readable = new Set([...document.querySelectorAll("#my-sources li")].map((li) => li.dataset.source));
  const load = () => { try { return JSON.parse(localStorage.getItem(slot)) || []; } catch { return []; } };
  return {
    list: () => load().filter((s) => !s.source || readable.has(s.source)),
    add(state) {
      const same = (s) => FIELDS.every((f) => (s[f] || "") === (state[f] || ""));
      localStorage.setItem(slot, JSON.stringify([state, ...load().filter((s) => !same(s))].slice(0, RECENT_MAX)));
    },
  };
}

function renderRecent(recent, run) {
  const items = recent.list().map((s) => {
    const params = new URLSearchParams(s);
    const scope = ["source", "kind", "language", "path"].filter((f) => s[f]).map((f) => `${f}:${s[f]}`).join(" ");
    const text = s.q.includes("\n") ? `${s.q.split("\n")[0]} …` : s.q;  // a pasted traceback: its first line
    return el("li", {}, el("a", { href: `/?${params}`, class: "recent-search" }, text),
              scope ? el("span", { class: "hint", text: ` ${scope}` }) : null);
  });
  $("#recent").replaceChildren(...items);
  $("#no-recent").hidden = items.length > 0;
}

async function sendFeedback(event, queryId, hit, useful) {
  const group = event.currentTarget.parentElement;
  try {
    await call("/v1/feedback", { method: "POST", body: JSON.stringify({ query_id: queryId, hit_id: hit.id, useful }) });
    for (const b of group.querySelectorAll("button")) b.setAttribute("aria-pressed", String(b === event.currentTarget));
    group.dataset.sent = useful ? "useful" : "not-useful";
    group.append(el("span", { class: "thanks", role: "status", text: "Thanks!" }));
  } catch (err) {
    group.append(el("span", { class: "error", role: "alert", text: `Not sent: ${err.message}` }));
  }
}

function onKey(e, box, list) {
  const typing = e.target.matches("input, select, textarea");
  if (e.key === "/" && !typing) { e.preventDefault(); box.focus(); box.select(); return; }
  const hits = [...list.querySelectorAll(".hit")];
  if (!hits.length || e.altKey || e.ctrlKey || e.metaKey) return;
  const at = hits.indexOf(document.activeElement);
  // From the query box, ↓ leaves it only from its last line (a pasted traceback keeps its arrows).
  const lastLine = e.target === box && !box.value.slice(box.selectionEnd).includes("\n");
  const down = e.key === "ArrowDown" || (e.key === "j" && !typing);
  const up = e.key === "ArrowUp" || (e.key === "k" && !typing);
  if (down && (!typing || lastLine)) { e.preventDefault(); focusHit(hits, Math.min(at + 1, hits.length - 1)); }
  else if (up && !typing) { e.preventDefault(); at <= 0 ? box.focus() : focusHit(hits, at - 1); }
  else if (e.key === "Enter" && at >= 0 && e.target === hits[at]) { e.preventDefault(); location.href = hits[at].dataset.href; }
}

function focusHit(hits, index) {
  hits.forEach((h, i) => h.classList.toggle("selected", i === index));
  hits[index].focus();
  hits[index].scrollIntoView({ block: "nearest" });
}

// -- document page ---------------------------------------------------------------------------------

// #L10 or #L10-L20: the lines (or the rendered blocks made from them) are marked and scrolled to.
function documentPage() {
  const view = $(".code") || $(".markdown");
  let anchor = null;  // the line a shift-click extends from
  function range() {
    const m = /^#L(\d+)(?:-L(\d+))?$/.exec(location.hash);
    if (m) return [Number(m[1]), Number(m[2] || m[1])].sort((a, b) => a - b);
    const first = Number(view.dataset.first);
    return first ? [first, Number(view.dataset.last) || first] : null;
  }
  function mark(scroll) {
    const r = range();
    for (const node of view.querySelectorAll(".hit-line")) node.classList.remove("hit-line");
    for (const link of document.querySelectorAll(".view-link")) link.hash = location.hash;
    if (!r) return;
    const [a, b] = r;
    const marked = $(".code") ? [...view.querySelectorAll(".line")].slice(a - 1, b)
      : [...view.querySelectorAll("[data-lines]")].filter((node) => {
        const [from, to] = node.dataset.lines.split("-").map(Number);
        return from <= b && to >= a;
      });
    for (const node of marked) node.classList.add("hit-line");
    $("#range-note").textContent = marked.length ? (a === b ? `Line ${a} is marked.` : `Lines ${a}–${b} are marked.`) : "";
    if (scroll && marked.length) marked[0].scrollIntoView({ block: marked.length > 20 ? "start" : "center" });
  }
  view.addEventListener("click", (e) => {  // a line number: that line; shift-click: a range from the last one
    const link = e.target.closest("a.ln");
    if (!link) return;
    e.preventDefault();
    const n = Number(link.dataset.line);
    const [a, b] = e.shiftKey && anchor ? [Math.min(anchor, n), Math.max(anchor, n)] : [n, n];
    if (!e.shiftKey) anchor = n;
    history.replaceState(null, "", a === b ? `#L${a}` : `#L${a}-L${b}`);
    mark(false);
  });
  addEventListener("hashchange", () => mark(true));
  mark(true);
}

// -- admin console ---------------------------------------------------------------------------------

const when = (iso) => (iso ? new Date(iso).toLocaleString() : "never");
const cells = (...values) => values.map((v) => el("td", {}, v instanceof Node ? v : String(v ?? "")));

const URL_EXAMPLES = { gitlab: "https://gitlab.example.com", jira: "https://example.atlassian.net",
                       confluence: "https://example.atlassian.net/wiki" };

function adminPage() {
  let timer = null;
  let notice = "";  // the outcome of the last action stays visible across refreshes until the next one
  const status = (text) => { $("#admin-status").textContent = notice ? `${notice} · ${text}` : text; };
  async function refresh() {  // every second while a job is queued or running, else every 5 s
    clearTimeout(timer);
    let active = false;
    try {
      const state = await call("/ui/admin/state");
      renderAdmin(state);
      active = state.jobs.some((job) => job.state === "queued" || job.state === "running");
      status(`Updated ${new Date().toLocaleTimeString()}`);
    } catch (err) {
      status(`Refresh failed: ${err.message}`);
    } finally {
      clearTimeout(timer);
      timer = setTimeout(refresh, active ? 1000 : 5000);
    }
  }
  async function reindex(name) {
    try {
      const job = await call(`/v1/sources/${encodeURIComponent(name)}/reindex`, { method: "POST", body: "{}" });
      notice = `Reindex of ${name} queued (job ${job.id})`;
    } catch (err) {
      notice = `Reindex of ${name} failed: ${err.message}`;
    }
    $("#admin-status").textContent = notice;
    refresh();
  }
  adminPage.reindex = reindex;
  async function act(label, url, options) {  // one change to a source; the outcome stays as the notice
    try {
      notice = label(await call(url, options));
    } catch (err) {
      notice = `${err.message}`;
    }
    $("#admin-status").textContent = notice;
    refresh();
  }
  const dialog = $("#edit-source");
  let editing = null;
  adminPage.edit = (src) => {
    editing = src;
    $("#edit-source-name").textContent = src.name;
    $("#edit-access").value = src.access.join(", ");
    $("#edit-ref").value = src.ref;
    const hasRef = src.kind === "git" || src.kind === "gitlab";  // Jira and Confluence have none
    for (const part of [$("#edit-ref"), $('label[for="edit-ref"]')]) part.hidden = !hasRef;
    $("#edit-interval").value = src.interval_seconds == null ? "" : `${src.interval_seconds}s`;
    dialog.showModal();
  };
  $("#edit-cancel").addEventListener("click", () => dialog.close());
  $("#edit-source-form").addEventListener("submit", () => {  // method=dialog: the dialog closes itself
    const src = editing;
    const access = $("#edit-access").value.split(/[\s,]+/).filter(Boolean);
    const interval = $("#edit-interval").value.trim();
    const body = {};
    if (access.slice().sort().join() !== src.access.slice().sort().join()) body.access = access;
    if ($("#edit-ref").value.trim() !== src.ref) body.ref = $("#edit-ref").value.trim();
    if (interval !== (src.interval_seconds == null ? "" : `${src.interval_seconds}s`)) body.interval = interval || null;
    if (!Object.keys(body).length) return;
    act((r) => `${src.name}: changed ${r.changed.join(", ") || "nothing"}` +
                (r.jobs.length ? ` (${r.jobs.map((j) => `${j.kind} job ${j.id}`).join(", ")})` : ""),
        `/v1/sources/${encodeURIComponent(src.name)}`, { method: "PATCH", body: JSON.stringify(body) });
  });
  const adder = $("#add-source");
  const showKind = () => {  // the fields of the chosen kind; the others hidden and left out of the form
    const kind = $("#add-kind").value;
    for (const part of adder.querySelectorAll(".kind-fields")) {
      const shown = part.dataset.kinds.split(" ").includes(kind);
      part.hidden = !shown;
      for (const input of part.querySelectorAll("input")) input.disabled = !shown;
    }
    $("#add-url").placeholder = URL_EXAMPLES[kind] ?? "";
  };
  $("#add-kind").addEventListener("change", showKind);
  $("#add-source-open").addEventListener("click", () => { $("#add-source-form").reset(); showKind(); adder.showModal(); });
  $("#add-cancel").addEventListener("click", () => adder.close());
  $("#add-source-form").addEventListener("submit", () => addSource(new FormData($("#add-source-form"))));
  async function addSource(data) {  // POST /v1/sources (validated as `cairn sources add`), then index it
    notice = "";
    const text = (key) => (data.get(key) ?? "").trim();
    const list = (key) => text(key).split(/[\s,]+/).filter(Boolean);
    const name = text("name");
    const body = { name, kind: text("kind"), access: list("access") };
    for (const key of ["location", "url", "ref", "group", "jql", "username", "token_env", "token_file", "interval"]) {
      if (text(key)) body[key] = text(key);  // a field of another kind is disabled: not in the form
    }
    for (const key of ["projects", "spaces"]) if (list(key).length) body[key] = list(key);
    try {
      await call("/v1/sources", { method: "POST", body: JSON.stringify(body) });
      notice = `${name} added` + (body.access.length ? "" : body.kind === "git" ? " (admins only: nobody else may read it)"
        : " (items the source gives no permissions for: admins only)");
      const path = `/v1/sources/${encodeURIComponent(name)}`;
      if (data.get("index")) notice += ` · indexing (job ${(await call(`${path}/reindex`, { method: "POST", body: "{}" })).id})`;
    } catch (err) {
      notice = notice.startsWith(name) ? `${notice} · ${err.message}` : `${name} not added: ${err.message}`;
    }
    $("#admin-status").textContent = notice;
    refresh();
  }
  adminPage.cancel = (job) => act(() => `Cancelling ${job.kind} job of ${job.source} (${job.id})`,
                                  `/v1/jobs/${encodeURIComponent(job.id)}/cancel`, { method: "POST", body: "{}" });
  adminPage.remove = (name) => {
    if (!confirm(`Remove source ${name}? Every document indexed from it leaves the index.`)) return;
    act((r) => `${name} removed: ${r.removed.documents} documents, ${r.removed.chunks} chunks`,
        `/v1/sources/${encodeURIComponent(name)}`, { method: "DELETE" });
  };
  refresh();
}

function sourceCell(src) {  // its name, and what it is: git, gitlab, jira or confluence
  return el("span", {}, el("span", { class: "source-name", text: src.name }),
            el("span", { class: "source-kind", text: src.kind }));
}

// Who may read the source (admins always may). A git source's documents carry its access list; a GitLab,
// Jira or Confluence source's items carry their own permissions, read from it (the list is its default_access).
function readersCell(src) {
  const list = src.access.length ? src.access.join(", ") : "admins only";
  const text = src.kind === "git" ? list : `per item, from ${src.kind} (default: ${list})`;
  return el("span", { class: `readers${src.access.length || src.kind !== "git" ? "" : " admins-only"}`,
                      "data-source": src.name, text });
}

// What an admin can do to a source.
function sourceActions(src) {
  const button = (cls, text, label, onclick) =>
    el("button", { type: "button", class: cls, "data-source": src.name, text, "aria-label": `${label} ${src.name}`, onclick });
  return el("div", { class: "source-actions" },
    button("reindex", "Reindex", "Reindex", () => adminPage.reindex(src.name)),
    button("edit", "Edit", "Edit access, ref and schedule of", () => adminPage.edit(src)),
    button("remove", "Remove", "Remove", () => adminPage.remove(src.name)));
}

function renderAdmin(state) {
  const s = state.stats;
  const stats = [["Documents", s.documents], ["Chunks", s.chunks], ["Skipped files", s.skipped],
                 ["Failing items", s.failures], ["Size on disk", bytes(s.size_bytes)],
                 ["Embedding model", s.embedding_model ?? "?"], ["Index version", s.index_version ?? "?"],
                 ["Index generation", s.generation ?? "?"]];
  $("#stats").replaceChildren(...stats.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: String(v) })]));
  const focused = document.activeElement?.dataset?.source;
  const focusedKind = document.activeElement?.classList?.[0] ?? "reindex";
  $("#sources tbody").replaceChildren(...state.sources.map((src) => el("tr", { "data-source": src.name },
    ...cells(sourceCell(src), readersCell(src), el("span", { class: `state ${src.state}`, text: src.state }), when(src.last_success_at),
             permissionsCell(src.permissions), src.documents, src.chunks, src.skipped, redactionsCell(src.redactions), src.failures, src.last_error || "—",
             sourceActions(src)))));
  if (focused) $(`button.${CSS.escape(focusedKind)}[data-source="${CSS.escape(focused)}"]`)?.focus();
  $("#jobs tbody").replaceChildren(...state.jobs.map((job) => el("tr", { "data-job": job.id, "data-state": job.state },
    ...cells(job.source, job.kind, el("span", { class: `state ${job.state}`, text: job.state }), progress(job),
             job.eta_seconds == null ? "—" : seconds(job.eta_seconds), duration(job), countsText(job.counts),
             job.started_at ? when(job.started_at) : "—", job.error || "", jobActions(job)))));
  const troubled = state.sources.filter((src) => src.recent_failures.length || src.recent_skips.length ||
                                                 Object.keys(src.redactions?.rules ?? {}).length);
  $("#problems").replaceChildren(...(troubled.length ? troubled.map(problemList)
    : [el("p", { class: "hint", text: "No failures or skips in any source." })]));
  $("#feedback tbody").replaceChildren(...state.feedback.map((f) => el("tr", {},
    ...cells(when(f.at), f.user, f.useful ? "useful" : "not useful", f.hit, f.comment))));
}

// Counts only (the server never sends a secret): "3 redacted in 2 files · 1 secret file", per rule on hover.
function redactionsCell(r) {
  if (!r || (!r.total && !r.secret_files)) return "—";
  const parts = [];
  if (r.total) parts.push(`${r.total} redacted in ${r.files} file${r.files === 1 ? "" : "s"}`);
  if (r.secret_files) parts.push(`${r.secret_files} secret file${r.secret_files === 1 ? "" : "s"} skipped`);
  const rules = Object.entries(r.rules).map(([name, c]) => `${name}: ${c.redactions} in ${c.files}`).join("\n");
  return el("span", { class: "redactions", text: parts.join(" · "), title: rules || parts.join(" · ") });
}

// How fresh the source's access is; stale: its restricted documents are not served, and why.
function permissionsCell(p) {
  if (!p) return "—";
  const age = p.age_seconds == null ? "never refreshed" : `refreshed ${Math.round(p.age_seconds)} s ago`;
  const text = p.stale ? `stale (${age}): restricted documents hidden` : age;
  return el("span", { class: `permissions${p.stale ? " stale" : ""}`, text: p.error ? `${text} · ${p.error}` : text,
                      title: p.error || text });
}

const ACTIVE_JOB = ["queued", "running"];

function jobActions(job) {
  if (!ACTIVE_JOB.includes(job.state)) return "";
  return el("button", { type: "button", class: "remove cancel-job", "data-job": job.id, text: "Cancel",
                        "aria-label": `Cancel ${job.kind} job of ${job.source}`, onclick: () => adminPage.cancel(job) });
}

function seconds(s) {
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m} min ${Math.round(s % 60)} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

function duration(job) {
  if (job.duration_seconds == null) return job.state === "queued" ? "waiting" : "—";
  return el("span", { class: "duration", text: seconds(job.duration_seconds) + (job.finished_at ? "" : " so far") });
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function progress(job) {
  if (!job.total) return job.state === "succeeded" ? "done" : `${job.done}`;
  const pct = Math.round((100 * job.done) / job.total);
  return el("span", {}, el("progress", { max: job.total, value: job.done, "aria-label": `${job.source} ${pct}%` }),
            ` ${job.done}/${job.total}`);
}

function countsText(counts) {
  const keys = ["files_seen", "files_changed", "files_skipped", "files_failed", "listings_failed", "items_failed",
                "chunks_written", "chunks_embedded"];
  const shown = (k) => counts[k] || (k === "files_seen" && counts[k] != null);  // other zeros left out
  return keys.filter(shown).map((k) => `${k.replace("_", " ")} ${counts[k]}`).join(", ");
}

function problemList(src) {
  const items = [...src.recent_failures.map((f) => el("li", { class: "failure" },
                    el("code", { text: f.item }), ` failed ${f.attempts}×: ${f.error}`)),
                 ...src.recent_skips.map((k) => el("li", { class: "skipped" },
                    el("code", { text: k.path }), ` skipped: ${k.reason}${k.detail ? ` (${k.detail})` : ""}`)),
                 ...Object.entries(src.redactions?.rules ?? {}).map(([rule, c]) => el("li", { class: "redacted" },
                    el("code", { text: rule }), ` redacted ${c.redactions}× in ${c.files} file${c.files === 1 ? "" : "s"}`))];
  return el("div", { class: "problems", "data-source": src.name }, el("h3", { text: src.name }),
            items.length ? el("ul", {}, ...items) : el("p", { class: "hint", text: "No failures or skips." }));
}

// -- personal access tokens --------------------------------------------------------------------------

function tokensPage() {
  const base = $("#tokens").dataset.base;
  const form = $("#new-token"), status = $("#tokens-status"), allStatus = $("#all-status");
  const stateCell = (t) => el("span", { class: `state ${t.state}`, text: t.state });
  async function revoke(url, t, say) {
    if (!confirm(`Revoke token “${t.name || t.id}”? Editors and agents using it stop working at once.`)) return;
    try {
      await call(url, { method: "DELETE" });
      say(`Revoked “${t.name || t.id}”.`);
    } catch (err) {
      say(`Not revoked: ${err.message}`);
    }
    load();
  }
  const revokeButton = (url, t, say) => t.state !== "active" ? "" :
    el("button", { type: "button", class: "remove revoke", "data-token": t.id, text: "Revoke",
                   "aria-label": `Revoke token ${t.name || t.id}`, onclick: () => revoke(url, t, say) });
  async function load() {
    if (form) {
      try {
        const mine = await call("/v1/me/tokens");
        $("#my-tokens tbody").replaceChildren(...(mine.length ? mine.map((t) => el("tr", { "data-token": t.id },
          ...cells(t.name, when(t.created_at), when(t.expires_at), stateCell(t),
                   revokeButton(`/v1/me/tokens/${encodeURIComponent(t.id)}`, t, (m) => { status.textContent = m; }))))
          : [el("tr", {}, el("td", { colspan: "5", class: "hint", text: "No tokens yet." }))]));
      } catch (err) {
        status.textContent = `Could not list your tokens: ${err.message}`;
      }
    }
    if ($("#all-tokens")) {
      try {
        const all = await call("/v1/tokens");
        $("#all-tokens tbody").replaceChildren(...all.map((t) => el("tr", { "data-token": t.id },
          ...cells(t.user, t.kind, t.name, when(t.created_at), t.expires_at ? when(t.expires_at) : "never", stateCell(t),
                   revokeButton(`/v1/tokens/${encodeURIComponent(t.id)}`, t, (m) => { allStatus.textContent = m; })))));
      } catch (err) {
        allStatus.textContent = `Could not list tokens: ${err.message}`;
      }
    }
  }
  form?.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { name: form.elements.name.value.trim(), expires_in_days: Number(form.elements.expires_in_days.value) };
    try {
      showCreated(await call("/v1/me/tokens", { method: "POST", body: JSON.stringify(body) }), base);
      status.textContent = `Created “${body.name}”.`;
      form.reset();
    } catch (err) {
      status.textContent = `Not created: ${err.message}`;
    }
    load();
  });
  $("#copy-token")?.addEventListener("click", copyToken);
  $("#created-done")?.addEventListener("click", () => {  // the token leaves the page for good
    $("#new-token-value").textContent = $("#snippet-mcp").textContent = $("#snippet-continue").textContent = "";
    $("#created").hidden = true;
  });
  load();
}

function showCreated(created, base) {
  const tok = created.token;
  $("#created-name").textContent = `“${created.name}”`;
  $("#new-token-value").textContent = tok;
  $("#snippet-mcp").textContent = JSON.stringify({ servers: { cairn: { type: "http", url: `${base}/mcp`,
    headers: { Authorization: `Bearer ${tok}` } } } }, null, 2);
  $("#snippet-continue").textContent = ["mcpServers:", "  - name: Cairn", "    type: streamable-http",
    `    url: ${base}/mcp`, `    apiKey: ${tok}`, "context:", "  - provider: http", "    params:",
    `      url: ${base}/v1/context`, "      title: cairn", "      displayTitle: Cairn", "      headers:",
    `        Authorization: Bearer ${tok}`].join("\n");
  $("#created").hidden = false;
  $("#copy-token").focus();
}

async function copyToken() {
  const tok = $("#new-token-value").textContent, say = (m) => { $("#copy-status").textContent = m; };
  try {
    await navigator.clipboard.writeText(tok);
    say("Copied.");
  } catch {  // no clipboard permission: select it so Ctrl+C works
    getSelection().selectAllChildren($("#new-token-value"));
    say("Selected: press Ctrl+C (⌘C) to copy.");
  }
}

const PAGES = { search: searchPage, document: documentPage, admin: adminPage, tokens: tokensPage };
document.addEventListener("DOMContentLoaded", () => PAGES[document.body.dataset.page]?.());
