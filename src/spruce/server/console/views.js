// spruce console: the pages. Each view has setup(root) (its fixed parts, once) and refresh()
// (fetch and re-render its data in place with SC.morph); `interval` is its polling period in ms.
"use strict";
(function () {
  const { h, api, apiAll, int, bytes, duration, time, safeUrl } = SC;
  const TERMINAL = ["Completed", "Failed", "Cancelled", "Superseded"];
  const OUTBOUND = ["export", "backup", "copy", "remote-export"]; // index -> uri; the others uri -> index
  const KINDS = ["export", "import", "backup", "restore", "copy", "copy-in", "remote-export", "remote-import"];
  const enc = encodeURIComponent;

  const td = (label, ...children) => h("td", { "data-label": label }, h("div", { class: "v" }, ...children));
  const badge = (status) => h("span", { class: "badge st-" + String(status).toLowerCase() }, status);
  const heads = (...names) => h("thead", {}, h("tr", {}, names.map((n) => h("th", { scope: "col" }, n))));
  const vh = (text) => h("span", { class: "vh" }, text);
  const path = (text) => h("span", { class: "path" }, text || "—");
  const done = (j) => j.recordsExported ?? j.recordsImported ?? 0;
  const pctText = (p) => (p >= 100 ? "100" : String(Math.floor(p || 0))) + " %";
  const progress = (j) => h("span", { class: "nowrap" },
    h("progress", { max: 100, value: Math.min(100, j.percentComplete || 0), "aria-label": `Progress of ${j.id}` }),
    " ", h("span", { class: "pct" }, pctText(j.percentComplete)));
  const table = (caption, head, rows) =>
    h("div", { class: "table-box" }, h("table", { class: "cards" }, h("caption", {}, caption), head,
      h("tbody", { "data-keyed": true }, rows)));
  const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;

  // -- Indexes ---------------------------------------------------------------------------------

  function vectorField(ix) {
    const fields = (ix.schema && ix.schema.fields) || {};
    return Object.values(fields).find((f) => f && /_vector$/.test(f.type || "")) || {};
  }

  function namespaces(stats) {
    if (!stats) return "—";
    if (stats.error) return h("span", { class: "error" }, stats.error);
    const entries = Object.entries(stats.namespaces || {}).sort(([a], [b]) => a.localeCompare(b));
    if (!entries.length) return h("span", { class: "muted" }, "no records");
    return [
      h("ul", { class: "plain" }, entries.map(([ns, v]) =>
        h("li", { "data-ns": ns || "__default__" }, h("span", { class: "ns" }, ns || "(default)"), ": ",
          h("span", { class: "count" }, int(v.vectorCount))))),
      entries.length > 1 ? h("span", { class: "muted" }, "total " + int(stats.totalVectorCount)) : null,
    ];
  }

  function indexStatus(ix) {
    const st = ix.status || {};
    const state = st.state || (st.ready ? "Ready" : "Unknown");
    const job = st.spruceJob
      ? h("span", { class: "muted" }, " restore job ", h("a", { href: "/console/jobs" }, st.spruceJob)) : null;
    return [badge(state), job];
  }

  SC.views.indexes = {
    title: "Indexes",
    interval: 3000,
    setup(root) {
      this.box = h("div");
      root.append(this.box);
    },
    async refresh() {
      const list = ((await api("GET", "/indexes")) || {}).indexes || [];
      const stats = await Promise.all(list.map((ix) => api("GET", `/index/${enc(ix.name)}/describe_index_stats`)
        .catch((exc) => { if (exc.status === 401) throw exc; return { error: exc.message }; })));
      const body = !list.length
        ? h("p", { class: "empty" }, "No indexes yet. Create one with ", h("code", {}, "spruce index create"),
          " or the pinecone SDK, or restore one from ", h("a", { href: "/console/start" }, "Start a job"), ".")
        : table(plural(list.length, "index", "indexes"),
          heads("Name", "Dimension", "Metric", "Records per namespace", "Status"),
          list.map((ix, i) => h("tr", { "data-key": ix.name },
            h("th", { scope: "row" }, ix.name),
            td("Dimension", ix.dimension ?? vectorField(ix).dimension ?? "—"),
            td("Metric", ix.metric ?? vectorField(ix).metric ?? "—"),
            td("Records per namespace", namespaces(stats[i])),
            td("Status", indexStatus(ix)))));
      SC.morph(this.box, h("div", {}, body));
    },
  };

  // -- Jobs --------------------------------------------------------------------------------------

  // Records/s from this page's own samples (browser clock only, so no clock skew), else the
  // average of a finished job; the ETA from the same rate.
  function speed(j, samples) {
    const s = samples.get(j.id) || [];
    if (j.status === "InProgress" && s.length >= 2) {
      const a = s[0];
      const b = s[s.length - 1];
      const dt = b.t - a.t;
      if (dt < 0.5) return ["—", "—"];
      const rate = (b.done - a.done) / dt;
      const prate = (b.pct - a.pct) / dt;
      let eta = NaN;
      if (j.recordsTotal && rate > 0) eta = (j.recordsTotal - b.done) / rate;
      else if (prate > 0) eta = (100 - b.pct) / prate;
      return [int(Math.round(rate)), duration(eta)];
    }
    if (j.status === "Completed" && j.startedAt && j.finishedAt) {
      const secs = (new Date(j.finishedAt) - new Date(j.startedAt)) / 1000;
      return [secs > 0 ? int(Math.round(done(j) / secs)) : "—", "done"];
    }
    return ["—", "—"];
  }

  function jobRows(j, samples) {
    const [src, dst] = OUTBOUND.includes(j.kind) ? [j.index, j.uri] : [j.uri, j.index];
    const [rate, eta] = speed(j, samples);
    const running = !TERMINAL.includes(j.status);
    const rows = [h("tr", { "data-key": j.id, class: "job" },
      h("th", { scope: "row" }, h("span", { class: "id" }, j.id),
        h("span", { class: "muted when" }, SC.timeEl(j.createdAt))),
      td("Kind", h("span", { class: "nowrap" }, j.kind)), td("Source", path(src)), td("Target", path(dst)),
      td("Status", badge(j.status)),
      td("Progress", progress(j), h("span", { class: "muted small" },
        `${int(done(j))}${j.recordsTotal != null ? " of " + int(j.recordsTotal) : ""} records`)),
      td("Records/s", h("span", { class: "rate" }, rate)), td("ETA", h("span", { class: "eta" }, eta)),
      td("Actions", h("div", { class: "actions" },
        h("button", { type: "button", "data-action": "cancel", "data-id": j.id, disabled: !running },
          "Cancel", vh(` job ${j.id}`)),
        h("button", { type: "button", "data-action": "resume", "data-id": j.id, disabled: j.status !== "Interrupted" },
          "Resume", vh(` job ${j.id}`)))))];
    if (j.error || j.reason) {
      rows.push(h("tr", { "data-key": j.id + " detail", class: "detail" }, h("td", { colspan: 9 },
        j.error ? [h("strong", {}, "Error: "), h("span", { class: "errtext" }, j.error)]
          : [h("strong", {}, "Why it stopped: "), j.reason])));
    }
    return rows;
  }

  SC.views.jobs = {
    title: "Jobs",
    interval: 1000,
    setup(root) {
      this.samples = new Map();
      const kind = new URLSearchParams(location.search).get("kind") || "";
      this.filter = h("select", { id: "kind-filter" }, h("option", { value: "" }, "All kinds"),
        KINDS.map((k) => h("option", { value: k, selected: k === kind }, k)));
      this.filter.addEventListener("change", () => {
        const q = this.filter.value ? "?kind=" + enc(this.filter.value) : "";
        history.replaceState(history.state, "", location.pathname + q);
        SC.refreshNow();
      });
      this.msg = h("p", { class: "error", role: "alert" });
      this.box = h("div");
      root.append(h("div", { class: "toolbar" }, h("label", { for: "kind-filter" }, "Kind"), this.filter,
        h("span", { class: "muted" }, "Updates every second.")), this.msg, this.box);
      root.addEventListener("click", (ev) => this.act(ev));
    },
    async act(ev) {
      const btn = ev.target.closest("button[data-action]");
      if (!btn) return;
      const id = btn.dataset.id;
      btn.disabled = true;
      this.msg.textContent = "";
      try {
        if (btn.dataset.action === "cancel") await api("DELETE", `/jobs/${enc(id)}`);
        else await api("POST", `/jobs/${enc(id)}/resume`);
      } catch (exc) {
        SC.handle(exc, (m) => (this.msg.textContent = m));
      }
      SC.refreshNow();
    },
    async refresh() {
      const kind = this.filter.value;
      const jobs = ((await api("GET", "/jobs" + (kind ? "?kind=" + enc(kind) : ""))) || {}).data || [];
      const t = performance.now() / 1000;
      for (const j of jobs) {
        if (j.status !== "InProgress") { this.samples.delete(j.id); continue; }
        const s = this.samples.get(j.id) || [];
        s.push({ t, done: done(j), pct: j.percentComplete || 0 });
        while (s.length > 2 && (s.length > 8 || t - s[0].t > 10)) s.shift();
        this.samples.set(j.id, s);
      }
      const newest = jobs.slice().reverse();
      const body = !newest.length
        ? h("p", { class: "empty" }, kind ? `No ${kind} jobs.` : "No jobs yet. Start one from ",
          kind ? null : h("a", { href: "/console/start" }, "Start a job"), kind ? null : ".")
        : table(plural(newest.length, "job", "jobs") + ", newest first",
          heads("Job", "Kind", "Source", "Target", "Status", "Progress", "Records/s", "ETA", "Actions"),
          newest.flatMap((j) => jobRows(j, this.samples)));
      SC.morph(this.box, h("div", {}, body));
    },
  };

  // -- Backups and exports -------------------------------------------------------------------------

  function checksums(j, v, busy) {
    let text;
    if (busy) text = h("span", {}, "Verifying…");
    else if (!v) text = h("span", { class: "muted" }, "Not verified");
    else if (v.ok) {
      text = h("span", { class: "ok" }, `Verified: ${plural(v.filesChecked, "file", "files")}, ${time(v.checkedAt)}`);
    }
    else text = h("span", { class: "error" }, "Verification failed: " + v.problems.join("; "));
    return [text, " ", h("button", { type: "button", "data-action": "verify", "data-id": j.id, disabled: !!busy },
      v ? "Verify again" : "Verify", vh(` checksums of ${j.id}`))];
  }

  function downloads(j) {
    const url = safeUrl(j.downloadUrl);
    if (!url) return h("span", { class: "muted" }, "no link");
    const files = Object.entries(j.downloadUrls || {}).filter(([, u]) => safeUrl(u)).sort(([a], [b]) => a.localeCompare(b));
    return [h("a", { href: url, class: "manifest" }, "manifest.json"), vh(` of ${j.id}`),
      files.length > 1 ? h("details", {}, h("summary", {}, `All ${files.length} files`),
        h("ul", { class: "plain files" }, files.map(([p, u]) => h("li", {}, h("a", { href: u }, p))))) : null,
      j.downloadExpiresAt ? h("span", { class: "muted small" }, "links valid until " + time(j.downloadExpiresAt)) : null];
  }

  SC.views.archives = {
    title: "Backups and exports",
    interval: 5000,
    setup(root) {
      this.busy = new Set();
      this.msg = h("p", { class: "error", role: "alert" });
      this.box = h("div");
      root.append(h("p", { class: "muted" }, "Completed exports, backups and repository snapshots. " +
        "Download links are signed and work without the API key until they expire. Verify re-reads " +
        "every file and checks its size and sha256 against the manifest."), this.msg, this.box);
      root.addEventListener("click", (ev) => this.verify(ev));
    },
    async verify(ev) {
      const btn = ev.target.closest("button[data-action=verify]");
      if (!btn) return;
      const id = btn.dataset.id;
      this.busy.add(id);
      this.msg.textContent = "";
      btn.disabled = true;
      try {
        await api("POST", "/verifications", { jobId: id });
      } catch (exc) {
        SC.handle(exc, (m) => (this.msg.textContent = m));
      }
      this.busy.delete(id);
      SC.refreshNow();
    },
    async refresh() {
      const [exp, bak, backups, ver] = await Promise.all([api("GET", "/jobs?kind=export"),
        api("GET", "/jobs?kind=backup"), apiAll("/backups"), api("GET", "/verifications")]);
      const verified = new Map(((ver && ver.data) || []).map((v) => [v.jobId, v]));
      const jobs = [...((exp && exp.data) || []), ...((bak && bak.data) || [])]
        .filter((j) => j.status === "Completed")
        .sort((a, b) => String(b.finishedAt).localeCompare(String(a.finishedAt)));
      const rows = jobs.map((j) => {
        const uri = String(j.uri || "").replace(/\/+$/, "");
        const b = j.kind === "export" ? backups.find((x) => uri.endsWith("/" + x.backup_id)) : null;
        const name = b ? b.name || b.backup_id : j.kind === "backup" ? (j.options || {}).snapshot_id : uri.split("/").pop();
        const kind = b ? "Backup" : j.kind === "backup" ? "Snapshot" : "Export";
        return h("tr", { "data-key": j.id },
          h("th", { scope: "row" }, h("span", { class: "name" }, name || j.id), h("span", { class: "muted when" }, j.id)),
          td("Kind", kind), td("Index", j.index), td("Location", path(j.uri)),
          td("Records", int(done(j))), td("Size", h("span", { class: "nowrap" }, bytes(j.bytesWritten ?? j.bytesRead))),
          td("Finished", SC.timeEl(j.finishedAt)),
          td("Checksums", checksums(j, verified.get(j.id), this.busy.has(j.id))),
          td("Download", downloads(j)));
      });
      const body = !rows.length
        ? h("p", { class: "empty" }, "No completed exports or backups yet. Start one from ",
          h("a", { href: "/console/start" }, "Start a job"), ".")
        : table(plural(rows.length, "archive", "archives") + ", newest first",
          heads("Archive", "Kind", "Index", "Location", "Records", "Size", "Finished", "Checksums", "Download"), rows);
      SC.morph(this.box, h("div", {}, body));
    },
  };
})();
