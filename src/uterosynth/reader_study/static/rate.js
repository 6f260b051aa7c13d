/* Rater page: one image at a time, keyboard first, resume where the rater left off. */
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const token = RS.takeToken("rs-rater-token");
  const state = {
    item: null, slices: [], slice: 0, choice: null, confidence: null, realism: null,
    active: "confidence", shownAt: 0, busy: false,
  };

  const viewer = RSViewer.create($("canvas"), $("image"), (v) => {
    $("view-state").textContent = "L " + Math.round(v.window_center) + " · W " + Math.round(v.window_width) +
      " · " + Math.round(v.zoom * 100) + " %";
  });
  RSViewer.PRESETS.forEach((p, k) => {
    const b = document.createElement("button");
    b.type = "button"; b.textContent = p.name; b.dataset.preset = String(k);
    b.addEventListener("click", () => viewer.usePreset(k));
    $("view-presets").appendChild(b);
  });
  $("view-reset").addEventListener("click", () => viewer.reset());

  function message(title, text) {
    RS.show($("rate-main"), false);
    RS.show($("message"), true);
    $("message-title").textContent = title;
    $("message-text").textContent = text;
  }

  function setError(text) {
    $("error").textContent = text || "";
    RS.show($("error"), Boolean(text));
  }

  function setProgress(answered, total) {
    RS.show($("progress-wrap"), true);
    $("progress-fill").style.width = (total ? (100 * answered) / total : 0) + "%";
    $("progress-text").textContent = answered + " / " + total;
  }

  function render() {
    document.querySelectorAll(".choice").forEach((b) => {
      b.classList.toggle("selected", b.dataset.choice === state.choice);
      b.setAttribute("aria-pressed", String(b.dataset.choice === state.choice));
    });
    ["confidence", "realism"].forEach((name) => {
      const group = $("group-" + name);
      group.classList.toggle("active", state.active === name);
      group.querySelectorAll("button").forEach((b) => {
        const on = Number(b.dataset.value) === state[name];
        b.classList.toggle("selected", on);
        b.setAttribute("aria-pressed", String(on));
      });
    });
    $("submit").disabled = !(state.choice && state.confidence && state.realism) || state.busy;
  }

  function showSlice(k) {
    if (!state.slices.length) return;
    state.slice = Math.max(0, Math.min(state.slices.length - 1, k));
    $("image").src = state.slices[state.slice];
    $("slice").value = String(state.slice);
    $("slice-label").textContent = "slice " + (state.slice + 1) + " / " + state.slices.length;
  }

  async function fetchSlice(id, k) {
    const res = await RS.api(token, "api/images/" + id + "/" + k);
    if (!res.ok) throw new Error("image " + res.status);
    return URL.createObjectURL(await res.blob());
  }

  async function showItem(item, answered, total) {
    state.slices.forEach((u) => URL.revokeObjectURL(u));
    Object.assign(state, { item: item, slices: [], choice: null, confidence: null, realism: null,
      active: "confidence", busy: false });
    $("comment").value = "";
    viewer.reset();  // every image starts as rendered
    setError("");
    setProgress(answered, total);
    $("item-heading").textContent = "Image " + (answered + 1) + " of " + total;
    const ids = Array.from({ length: item.n_slices }, (_, k) => k);
    state.slices = await Promise.all(ids.map((k) => fetchSlice(item.id, k)));
    RS.show($("stack-controls"), item.n_slices > 1);
    $("slice").max = String(item.n_slices - 1);
    showSlice(Math.floor(item.n_slices / 2));
    RS.show($("message"), false);
    RS.show($("rate-main"), true);
    state.shownAt = performance.now();
    render();
  }

  async function loadNext() {
    const res = await RS.api(token, "api/rater/me");
    if (res.status === 401) {
      message("Link not recognised", "This link is not valid for this study. Please use the personal link you were sent.");
      return;
    }
    if (!res.ok) { message("Something went wrong", "The server answered " + res.status + ". Please reload."); return; }
    const me = await res.json();
    $("who").textContent = me.name;
    setProgress(me.answered, me.total);
    if (me.closed) { message("The study is closed", "Thank you for taking part."); return; }
    if (!me.next) { message("All done — thank you!", "You have rated all " + me.total + " images. You can close this page."); return; }
    await showItem(me.next, me.answered, me.total);
  }

  async function submit() {
    if (state.busy || !(state.choice && state.confidence && state.realism)) return;
    state.busy = true;
    render();
    const body = {
      assignment_id: state.item.id, choice: state.choice, confidence: state.confidence,
      realism: state.realism, seconds: Math.round((performance.now() - state.shownAt) / 100) / 10,
      display: viewer.state(),
    };
    const comment = $("comment").value.trim();
    if (comment) body.comment = comment;
    let res;
    try {
      res = await RS.api(token, "api/rater/ratings", { method: "POST", json: body });
    } catch (err) {
      setError("Network problem — your answer was not saved. Please try again.");
      state.busy = false;
      render();
      return;
    }
    if (res.status === 201 || res.status === 409) {
      loadNext().catch(() => message("Cannot reach the server", "Your answer is saved. Please reload the page."));
      return;
    }
    if (res.status === 403) { message("The study is closed", "Your earlier answers are saved. Thank you."); return; }
    setError("Could not save (" + res.status + "). Please try again.");
    state.busy = false;
    render();
  }

  function setScore(value) {
    state[state.active] = value;
    if (state.active === "confidence") state.active = "realism";
    render();
  }

  document.addEventListener("keydown", (ev) => {
    if ($("rate-main").hidden) return;
    const typing = ev.target && (ev.target.tagName === "TEXTAREA" || ev.target.tagName === "INPUT");
    if (typing) {
      if (ev.key === "Escape") ev.target.blur();
      else if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); ev.target.blur(); submit(); }
      return;
    }
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const key = ev.key.toLowerCase();
    let handled = true;
    if (key === "r") { state.choice = "real"; state.active = "confidence"; render(); }
    else if (key === "s") { state.choice = "synthetic"; state.active = "confidence"; render(); }
    else if (/^[1-5]$/.test(key)) setScore(Number(key));
    else if (key === "c") { state.active = "confidence"; render(); }
    else if (key === "v") { state.active = "realism"; render(); }
    else if (key === "n") $("comment").focus();
    else if (key === "enter") submit();
    else if (key === "arrowup" || key === "k") showSlice(state.slice - 1);
    else if (key === "arrowdown" || key === "j") showSlice(state.slice + 1);
    else if (key === "?") $("help").open = !$("help").open;
    else if (key === "w") viewer.nextPreset();
    else if (key === "[" || key === "]") viewer.set({ window_width: viewer.state().window_width + (key === "]" ? 10 : -10) });
    else if (key === "," || key === ".") viewer.set({ window_center: viewer.state().window_center + (key === "." ? 5 : -5) });
    else if (key === "+" || key === "=") viewer.zoomBy(1.25);
    else if (key === "-") viewer.zoomBy(1 / 1.25);
    else if (key === "0") viewer.reset();
    else handled = false;
    if (handled) ev.preventDefault();
  });

  document.querySelectorAll(".choice").forEach((b) => b.addEventListener("click", () => {
    state.choice = b.dataset.choice; state.active = "confidence"; render();
  }));
  document.querySelectorAll(".scale").forEach((group) => group.querySelectorAll("button").forEach((b) =>
    b.addEventListener("click", () => { state.active = group.dataset.scale; setScore(Number(b.dataset.value)); })));
  $("submit").addEventListener("click", submit);
  $("slice").addEventListener("input", () => showSlice(Number($("slice").value)));
  $("viewer").addEventListener("wheel", (ev) => {
    if (ev.ctrlKey) { ev.preventDefault(); viewer.zoomBy(ev.deltaY < 0 ? 1.25 : 1 / 1.25); }
    else if (state.slices.length > 1) { ev.preventDefault(); showSlice(state.slice + Math.sign(ev.deltaY)); }
  }, { passive: false });

  if (!token) message("Personal link needed", "Open this page with the personal link you were sent.");
  else loadNext().catch(() => message("Cannot reach the server", "Please check your connection and reload."));
})();
