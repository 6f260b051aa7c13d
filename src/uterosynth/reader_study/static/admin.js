/* Admin page: progress per rater, close the study, export answers. */
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  let token = RS.takeToken("rs-admin-token");
  let timer = null;

  function fmt(ts) { return ts ? new Date(ts).toLocaleString() : "—"; }

  function row(r) {
    const tr = document.createElement("tr");
    const pct = r.total ? Math.round((100 * r.answered) / r.total) : 0;
    const cells = [r.name, r.answered + " / " + r.total, null, fmt(r.last_answer_at)];
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      if (i === 2) {
        td.className = "bar-col";
        const cell = document.createElement("div"); cell.className = "bar-cell";
        const bar = document.createElement("div"); bar.className = "progress";
        const fill = document.createElement("div"); fill.className = "progress-fill";
        fill.style.width = pct + "%";
        bar.appendChild(fill);
        const label = document.createElement("span"); label.className = "pct"; label.textContent = pct + "%";
        cell.append(bar, label);
        td.appendChild(cell);
      } else td.textContent = text;
      tr.appendChild(td);
    });
    return tr;
  }

  async function refresh() {
    const res = await RS.api(token, "api/admin/progress");
    if (res.status === 401) { sessionStorage.removeItem("rs-admin-token"); showLogin("Token not recognised."); return; }
    if (!res.ok) { $("admin-error").textContent = "Server answered " + res.status; RS.show($("admin-error"), true); return; }
    const p = await res.json();
    RS.show($("login"), false);
    RS.show($("dashboard"), true);
    $("stat-answers").textContent = p.total_answers;
    $("stat-raters").textContent = p.raters.length;
    $("stat-complete").textContent = p.raters.filter((r) => r.total && r.answered === r.total).length;
    $("stat-state").textContent = p.closed ? "closed" : "open";
    $("stat-state").classList.toggle("closed", p.closed);
    $("close-study").disabled = p.closed;
    $("rater-rows").replaceChildren(...p.raters.map(row));
    $("updated").textContent = "Updated " + new Date().toLocaleTimeString() + (p.closed ? " · closed " + fmt(p.closed_at) : "");
    if (!timer) timer = setInterval(refresh, 10000);
  }

  function showLogin(error) {
    RS.show($("dashboard"), false);
    RS.show($("login"), true);
    $("login-error").textContent = error || "";
    RS.show($("login-error"), Boolean(error));
  }

  async function download(format) {
    const res = await RS.api(token, "api/admin/export?format=" + format);
    if (!res.ok) return;
    const url = URL.createObjectURL(await res.blob());
    const a = document.createElement("a");
    a.href = url; a.download = "answers." + format;
    document.body.appendChild(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    token = $("admin-token").value.trim();
    sessionStorage.setItem("rs-admin-token", token);
    $("admin-token").value = "";
    refresh();
  });
  $("export-csv").addEventListener("click", () => download("csv"));
  $("export-json").addEventListener("click", () => download("json"));
  $("close-study").addEventListener("click", async () => {
    if (!window.confirm("Close the study? Raters will no longer be able to submit answers.")) return;
    await RS.api(token, "api/admin/close", { method: "POST" });
    refresh();
  });

  if (token) refresh(); else showLogin("");
})();
