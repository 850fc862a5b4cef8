// spruce console: the "Start a job" page. Three small forms (export, backup, restore) that send
// what the CLI sends over HTTP and show the server's error message verbatim; the server does the
// validation. A started job is then followed live until it ends.
"use strict";
(function () {
  const { h, api, apiAll } = SC;
  const TERMINAL = ["Completed", "Failed", "Cancelled", "Superseded"];
  const FORMATS = ["jsonl.gz", "jsonl", "parquet"];
  const enc = encodeURIComponent;

  // A labelled control with an optional hint tied to it (aria-describedby).
  function field(control, label, hint) {
    const id = control.id;
    if (hint) control.setAttribute("aria-describedby", id + "-hint");
    const check = control.type === "checkbox";
    return h("div", { class: check ? "field check" : "field" },
      check ? [control, h("label", { for: id }, label)] : [h("label", { for: id }, label), control],
      hint ? h("p", { class: "hint", id: id + "-hint" }, hint) : null);
  }
  const text = (id, value, placeholder) =>
    h("input", { id, name: id, type: "text", value: value || "", placeholder, autocomplete: "off", spellcheck: "false" });
  const select = (id, options) =>
    h("select", { id, name: id }, options.map(([v, label]) => h("option", { value: v }, label)));
  const checkbox = (id) => h("input", { id, name: id, type: "checkbox" });
  const need = (value, what) => {
    if (!value) throw new SC.ApiError(400, `${what} is required.`);
    return value;
  };

  // Follow job `id` in `box` until it ends: status, a progress bar, the error in full.
  function watch(box, label, id) {
    const token = (box.watchToken = (box.watchToken || 0) + 1);
    const tick = async () => {
      if (box.watchToken !== token) return;
      let j;
      try {
        j = await api("GET", `/jobs/${enc(id)}`);
      } catch (exc) {
        if (exc.status === 401) return SC.handle(exc);
        setTimeout(tick, 1000);
        return;
      }
      const p = Math.min(100, j.percentComplete || 0);
      SC.morph(box, h("div", { class: "result", id: box.id, "data-job": j.id, "data-status": j.status },
        h("p", { role: "status" }, `${label} ${j.id}: `, h("span", { class: "status" }, j.status)),
        h("p", {}, h("progress", { max: 100, value: p, "aria-label": `Progress of ${j.id}` }), " ",
          h("span", { class: "pct" }, (p >= 100 ? "100" : String(Math.floor(p))) + " %")),
        j.error ? h("p", { class: "error" }, h("strong", {}, "Error: "), j.error) : null,
        h("p", {}, h("a", { href: "/console/jobs" }, "All jobs"), " · ",
          h("a", { href: "/console/archives" }, "Backups and exports"))));
      if (!TERMINAL.includes(j.status)) setTimeout(tick, 1000);
    };
    tick();
  }

  // One form: on submit, `start()` returns [label, jobId]; errors go to the form's alert verbatim.
  function form(id, title, intro, fields, button, start) {
    const error = h("p", { class: "error", role: "alert", id: id + "-error" });
    const result = h("div", { class: "result", id: id + "-result" });
    const submit = h("button", { type: "submit" }, button);
    const el = h("form", { id: id + "-form", novalidate: true, "aria-labelledby": id + "-title" }, fields, submit);
    el.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      error.textContent = "";
      submit.disabled = true;
      try {
        const [label, jobId] = await start();
        watch(result, label, jobId);
        SC.views.start.refresh().catch(() => {});
      } catch (exc) {
        SC.handle(exc, (m) => (error.textContent = m));
      } finally {
        submit.disabled = false;
      }
    });
    return h("section", { class: "panel", "aria-labelledby": id + "-title" },
      h("h2", { id: id + "-title" }, title), h("p", { class: "muted" }, intro), el, error, result);
  }

  const val = (id) => document.getElementById(id).value.trim();
  const checked = (id) => document.getElementById(id).checked;

  function exportForm() {
    return form("export", "Export", "One exact snapshot of an index, written as a checksummed archive " +
      "(as spruce export does).", [
      field(select("export-index", []), "Index"),
      field(text("export-uri", "", "my-index-2026-01-01"), "Destination",
        "A folder inside the server's storage roots (a relative path lands in the first, <data>/exports by " +
        "default), or an s3://, gs:// or az:// URI."),
      field(select("export-format", FORMATS.map((f) => [f, f])), "Format"),
      field(checkbox("export-overwrite"), "Replace an archive already there"),
    ], "Start export", async () => {
      const index = need(val("export-index"), "Index");
      const body = { uri: val("export-uri"), format: val("export-format") };
      if (checked("export-overwrite")) body.overwrite = true;
      const r = await api("POST", `/index/${enc(index)}/bulk/exports`, body);
      return ["Export", r.id];
    });
  }

  function backupForm() {
    return form("backup", "Backup", "A snapshot of an index in a backup repository, incremental when " +
      "the repository holds an earlier one of the same index (as spruce backup does).", [
      field(select("backup-index", []), "Index"),
      field(text("backup-repo", "default"), "Repository",
        "A repository name (kept in the server's backup folder) or a storage URI inside the storage roots."),
      field(select("backup-format", FORMATS.map((f) => [f, f])), "Format"),
      field(checkbox("backup-full"), "Full snapshot (not incremental)"),
    ], "Start backup", async () => {
      const repo = need(val("backup-repo"), "Repository");
      const body = { index: val("backup-index"), format: val("backup-format") };
      if (checked("backup-full")) body.full = true;
      const r = await api("POST", `/repositories/${enc(repo)}/snapshots`, body);
      return ["Backup", r.id];
    });
  }

  function restoreForm() {
    const from = select("restore-from", [["archive", "An archive (an export's folder or URI)"],
      ["snapshot", "A snapshot in a backup repository"], ["backup", "A backup (Pinecone's backup API)"]]);
    const parts = {
      archive: h("fieldset", { "data-from": "archive" }, h("legend", {}, "Archive"),
        field(text("restore-uri", "", "my-index-2026-01-01"), "Archive location",
          "A folder inside the server's storage roots, an object-store URI, or a download link of this server."),
        field(select("restore-conflict", [["overwrite", "overwrite"], ["skip", "skip"], ["fail", "fail"]]),
          "When a record already exists")),
      snapshot: h("fieldset", { "data-from": "snapshot", hidden: true }, h("legend", {}, "Snapshot"),
        field(text("restore-repo", "default"), "Repository"),
        field(text("restore-snapshot", "latest"), "Snapshot", "latest, or a snapshot id."),
        field(text("restore-source", ""), "Source index (optional)",
          "Which index's snapshots, when the repository holds several.")),
      backup: h("fieldset", { "data-from": "backup", hidden: true }, h("legend", {}, "Backup"),
        field(select("restore-backup", []), "Backup")),
    };
    from.addEventListener("change", () => {
      for (const [k, fs] of Object.entries(parts)) fs.hidden = k !== from.value;
    });
    return form("restore", "Restore", "Into a new index, or merged into an existing one from an archive " +
      "(as spruce restore does). Every file is checked against the manifest first.", [
      field(from, "Restore from"), Object.values(parts),
      field(text("restore-target", "", "my-index-restored"), "Into index"),
    ], "Start restore", async () => {
      const target = val("restore-target");
      if (from.value === "archive") {
        const body = { uri: val("restore-uri"), onConflict: val("restore-conflict"), createIndex: true,
          errorMode: { onError: "abort" } };
        const r = await api("POST", `/index/${enc(need(target, "Into index"))}/bulk/imports`, body);
        return ["Restore", r.id];
      }
      if (from.value === "snapshot") {
        const body = { target, snapshot: val("restore-snapshot") };
        if (val("restore-source")) body.sourceIndex = val("restore-source");
        const r = await api("POST", `/repositories/${enc(need(val("restore-repo"), "Repository"))}/restore`, body);
        return ["Restore", r.id];
      }
      const backup = need(val("restore-backup"), "Backup");
      const r = await api("POST", `/backups/${enc(backup)}/create-index`, { name: target });
      return ["Restore", r.restore_job_id];
    });
  }

  // Keep a <select>'s choice while its options are refreshed.
  function fill(id, options, empty) {
    const el = document.getElementById(id);
    const keep = el.value;
    el.textContent = "";
    if (!options.length) el.append(h("option", { value: "" }, empty));
    for (const [v, label] of options) el.append(h("option", { value: v }, label));
    if (options.some(([v]) => v === keep)) el.value = keep;
  }

  SC.views.start = {
    title: "Start a job",
    interval: 0, // the choices are loaded once (and after each start); started jobs poll themselves
    setup(root) {
      root.append(h("div", { class: "forms" }, exportForm(), backupForm(), restoreForm()));
    },
    async refresh() {
      const [ixs, backups] = await Promise.all([api("GET", "/indexes"), apiAll("/backups")]);
      const names = ((ixs && ixs.indexes) || []).map((ix) => [ix.name, ix.name]).sort();
      fill("export-index", names, "(no indexes)");
      fill("backup-index", names, "(no indexes)");
      fill("restore-backup", backups.filter((b) => b.status === "Ready").map((b) =>
        [b.backup_id, `${b.name || b.backup_id} (${b.source_index_name}, ${SC.time(b.created_at)})`]), "(no backups)");
    },
  };
})();
