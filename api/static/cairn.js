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

async function call(url, options = {}) {
  const res = await fetch(url, { credentials: "same-origin", ...options, headers: UI_HEADERS });
  if (res.status === 401) {
    location.href = "/signin?next=" + encodeURIComponent(location.pathname + location.search);
    throw new Error("signed out");
  }
  if (!res.ok) {  // the server's own message (e.g. why a change is refused) when it sent one
    const body = await res.json().catch(() => null);
    throw new Error(`${res.status} ${typeof body?.detail === "string" ? body.detail : res.statusText}`);
  }
  return res.json();
}

function docHref(hit, query) {
  const id = encodeURIComponent(hit.document_id).replace(/%2F/g, "/").replace(/%3A/g, ":");
  const params = new URLSearchParams({ line: hit.start_line, end: hit.end_line, q: query });
  return `/documents/${id}?${params}`;
}

// -- search page ---------------------------------------------------------------------------------

const FIELDS = ["q", "source", "kind", "language", "path"];

function searchPage() {
  const form = $("#search"), box = $("#q"), list = $("#results"), status = $("#status");
  const params = new URLSearchParams(location.search);
  for (const name of FIELDS) if (params.has(name)) form.elements[name].value = params.get(name);
  let timer = null, seq = 0;

  const value = (name) => form.elements[name].value.trim();
  function syncUrl() {
    const out = new URLSearchParams();
    for (const name of FIELDS) if (value(name)) out.set(name, value(name));
    history.replaceState(null, "", out.toString() ? `/?${out}` : "/");
  }
  async function run() {
    syncUrl();
    const query = value("q"), mine = ++seq;
    if (!query) { list.replaceChildren(); status.textContent = ""; return; }
    const body = { query, limit: 20, path_prefix: value("path"), sources: value("source") ? [value("source")] : [],
                   kinds: value("kind") ? [value("kind")] : [], languages: value("language") ? [value("language")] : [] };
    status.textContent = "Searching…";
    try {
      const data = await call("/ui/search", { method: "POST", body: JSON.stringify(body) });
      if (mine !== seq) return;
      list.replaceChildren(...data.hits.map((hit) => renderHit(hit, data.query_id, query)));
      const n = data.hits.length;
      status.textContent = n ? `${n} result${n === 1 ? "" : "s"} for “${query}”` : `No results for “${query}”`;
    } catch (err) {
      if (mine === seq) status.textContent = `Search failed: ${err.message}`;
    }
  }
  const later = () => { clearTimeout(timer); timer = setTimeout(run, 200); };
  box.addEventListener("input", later);
  for (const name of ["language", "path"]) form.elements[name].addEventListener("input", later);
  for (const name of ["source", "kind"]) form.elements[name].addEventListener("change", run);
  form.addEventListener("submit", (e) => { e.preventDefault(); clearTimeout(timer); run(); });
  document.addEventListener("keydown", (e) => onKey(e, box, list));
  if (value("q")) run();
}

function renderHit(hit, queryId, query) {
  const href = docHref(hit, query);
  const lines = hit.start_line === hit.end_line ? `L${hit.start_line}` : `L${hit.start_line}–${hit.end_line}`;
  const title = hit.title && hit.title !== hit.path ? hit.title : hit.path;
  const feedback = el("div", { class: "feedback", role: "group", "aria-label": "Was this result useful?" },
    el("button", { type: "button", class: "useful", text: "Useful", onclick: (e) => sendFeedback(e, queryId, hit, true) }),
    el("button", { type: "button", class: "not-useful", text: "Not useful",
                   onclick: (e) => sendFeedback(e, queryId, hit, false) }));
  return el("li", { class: "hit", tabindex: "-1", "data-id": hit.id, "data-href": href },
    el("h2", {}, el("a", { href, class: "open" }, title), el("span", { class: "lines", text: ` ${lines}` })),
    el("p", { class: "meta" }, el("span", { class: "source", text: hit.source }),
       ` · ${hit.kind.replace("_", " ")}` + (hit.language ? ` · ${hit.language}` : "") +
       (title !== hit.path ? ` · ${hit.path}` : "") + (hit.symbol ? ` · ${hit.symbol}` : "")),
    el("pre", { class: "snippet hl", html: hit.snippet_html }),
    el("div", { class: "actions" },
       hit.url ? el("a", { class: "original", href: hit.url, rel: "noopener noreferrer", text: "Open original" }) : null,
       feedback));
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
  const down = e.key === "ArrowDown" || (e.key === "j" && !typing);
  const up = e.key === "ArrowUp" || (e.key === "k" && !typing);
  if (down && (!typing || e.target === box)) { e.preventDefault(); focusHit(hits, Math.min(at + 1, hits.length - 1)); }
  else if (up && !typing) { e.preventDefault(); at <= 0 ? box.focus() : focusHit(hits, at - 1); }
  else if (e.key === "Enter" && at >= 0) { e.preventDefault(); location.href = hits[at].dataset.href; }
}

function focusHit(hits, index) {
  hits.forEach((h, i) => h.classList.toggle("selected", i === index));
  hits[index].focus();
  hits[index].scrollIntoView({ block: "nearest" });
}

// -- document page ---------------------------------------------------------------------------------

function documentPage() {
  const first = Number($(".code").dataset.first);
  if (first && !location.hash) $(`#L${first}`)?.scrollIntoView({ block: "center" });
}

// -- admin console ---------------------------------------------------------------------------------

const when = (iso) => (iso ? new Date(iso).toLocaleString() : "never");
const cells = (...values) => values.map((v) => el("td", {}, v instanceof Node ? v : String(v ?? "")));

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
  adminPage.remove = (name) => {
    if (!confirm(`Remove source ${name}? Every document indexed from it leaves the index.`)) return;
    act((r) => `${name} removed: ${r.removed.documents} documents, ${r.removed.chunks} chunks`,
        `/v1/sources/${encodeURIComponent(name)}`, { method: "DELETE" });
  };
  refresh();
}

// Who may read the source, and what an admin can do to it.
function sourceActions(src) {
  const readers = src.access.length ? src.access.join(", ") : "admins only";
  const button = (cls, text, label, onclick) =>
    el("button", { type: "button", class: cls, "data-source": src.name, text, "aria-label": `${label} ${src.name}`, onclick });
  return el("div", { class: "source-actions" },
    el("span", { class: "readers", "data-source": src.name, text: `Readers: ${readers}` }),
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
    ...cells(src.name, el("span", { class: `state ${src.state}`, text: src.state }), when(src.last_success_at),
             permissionsCell(src.permissions), src.documents, src.chunks, src.skipped, redactionsCell(src.redactions), src.failures, src.last_error || "—",
             sourceActions(src)))));
  if (focused) $(`button.${CSS.escape(focusedKind)}[data-source="${CSS.escape(focused)}"]`)?.focus();
  $("#jobs tbody").replaceChildren(...state.jobs.map((job) => el("tr", { "data-job": job.id, "data-state": job.state },
    ...cells(job.source, job.kind, el("span", { class: `state ${job.state}`, text: job.state }), progress(job),
             job.eta_seconds == null ? "—" : `${Math.ceil(job.eta_seconds)} s`, countsText(job.counts),
             when(job.started_at), job.error || ""))));
  $("#problems").replaceChildren(...state.sources.map(problemList));
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
  return keys.filter((k) => counts[k] != null).map((k) => `${k.replace("_", " ")} ${counts[k]}`).join(", ");
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

const PAGES = { search: searchPage, document: documentPage, admin: adminPage };
document.addEventListener("DOMContentLoaded", () => PAGES[document.body.dataset.page]?.());
