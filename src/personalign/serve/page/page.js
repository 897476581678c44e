// A person's page: calls the JSON API with the key the person typed (kept in sessionStorage for this tab).
// Every text from the server is inserted with textContent, never as HTML.
"use strict";

(function () {
  const PAGE = 20; // judgments per page
  const personId = document.body.dataset.personId;
  const storeKey = "personalign:key:" + personId;
  const api = "/v1/persons/" + encodeURIComponent(personId);
  let offset = 0;
  let lastProfile = null;

  const $ = (id) => document.getElementById(id);

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function num(x, digits) {
    if (typeof x !== "number" || !isFinite(x)) return String(x);
    return Number(x.toPrecision(digits || 3)).toString();
  }

  function say(text) {
    $("status").textContent = text || "";
  }

  function fail(text) {
    const e = $("error");
    e.textContent = text || "";
    e.hidden = !text;
  }

  async function call(method, path, opts) {
    const key = sessionStorage.getItem(storeKey);
    const resp = await fetch(api + path, {
      method: method,
      headers: { Authorization: "Bearer " + key, Accept: "application/json" },
      cache: "no-store",
    });
    if (opts && opts.raw && resp.ok) return resp;
    let body = null;
    try {
      body = await resp.json();
    } catch (_e) {
      body = null;
    }
    if (!resp.ok) {
      const msg = body && body.error ? body.error.message : resp.statusText;
      const err = new Error(msg);
      err.status = resp.status;
      throw err;
    }
    return body;
  }

  function explainError(err) {
    if (err.status === 401) return "This key is not valid (or no longer exists). Check it and sign in again.";
    if (err.status === 403) return "This key belongs to someone else: it cannot see this person's page.";
    return "Something went wrong: " + err.message;
  }

  function showSignedIn(on) {
    $("signin").hidden = on;
    $("content").hidden = !on;
  }

  // ---------------------------------------------------------------- generic rendering of explanation objects
  function renderValue(v, depth) {
    depth = depth || 0;
    if (v === null || v === undefined) return el("span", "none", "muted");
    if (typeof v === "number") return el("span", num(v));
    if (typeof v === "boolean") return el("span", v ? "yes" : "no");
    if (typeof v !== "object") return el("span", v);
    if (depth > 4) return el("span", JSON.stringify(v));
    if (Array.isArray(v)) {
      if (v.every((x) => x === null || typeof x !== "object")) {
        return el("span", v.map((x) => (typeof x === "number" ? num(x) : String(x))).join(", "));
      }
      const ul = el("ul");
      v.forEach((x) => {
        const li = el("li");
        li.appendChild(renderValue(x, depth + 1));
        ul.appendChild(li);
      });
      return ul;
    }
    const dl = el("dl");
    Object.keys(v).forEach((k) => {
      dl.appendChild(el("dt", k.replace(/_/g, " ")));
      const dd = el("dd");
      dd.appendChild(renderValue(v[k], depth + 1));
      dl.appendChild(dd);
    });
    return dl;
  }

  function renderDirections(dirs, box) {
    const list = el("ol", null, "directions");
    dirs.forEach((d, i) => {
      const li = el("li", null, "direction");
      const ends = d.high_end && d.low_end ? ": " + d.high_end + " (+) vs " + d.low_end + " (-)" : "";
      li.appendChild(el("h3", d.name || "Direction " + (i + 1) + ends));
      if (d.summary) li.appendChild(el("p", d.summary));
      if (typeof d.sd === "number") {
        li.appendChild(el("p", "Uncertainty (standard deviation): " + num(d.sd), "muted"));
      }
      const rest = {};
      Object.keys(d).forEach((k) => {
        if (!["name", "summary", "sd", "high_end", "low_end"].includes(k)) rest[k] = d[k];
      });
      if (Object.keys(rest).length) {
        const more = el("details");
        more.appendChild(el("summary", "Details"));
        more.appendChild(renderValue(rest, 1));
        li.appendChild(more);
      }
      list.appendChild(li);
    });
    box.appendChild(list);
  }

  // -------------------------------------------------------------------------------------- profile sections
  function originText(p) {
    const parts = [];
    if (p.starts_from === "trained") {
      const n = p.n_training_judgments;
      parts.push(
        "The model was trained on your earlier judgments" +
          (typeof n === "number" ? " (" + n + " comparisons)" : "") +
          ", so it started from what it learned about you."
      );
    } else if (p.trained) {
      parts.push("You reset your profile: what the model learned about you in training is set aside, and you start from the population (people in general).");
    } else {
      parts.push("The model did not know you before, so you started from the population (what fits people in general).");
    }
    if (p.n_judgments > 0) {
      parts.push(
        "Since then you gave " + p.n_judgments + " judgment" + (p.n_judgments === 1 ? "" : "s") +
          " here (" + p.n_comparisons + " comparisons, " + p.n_ratings + " ratings), folded in on top."
      );
    } else {
      parts.push("You have not given any judgments here yet.");
    }
    return parts.join(" ");
  }

  function renderBelief(p) {
    const box = $("belief");
    box.replaceChildren();
    const ex = p.explanation;
    if (ex && typeof ex === "object") {
      if (ex.summary) box.appendChild(el("p", ex.summary));
      if (Array.isArray(ex.directions) && ex.directions.length) renderDirections(ex.directions, box);
      const rest = {};
      Object.keys(ex).forEach((k) => {
        if (!["summary", "directions", "bounds", "monitors"].includes(k)) rest[k] = ex[k];
      });
      if (Object.keys(rest).length) {
        const more = el("details");
        more.appendChild(el("summary", "More about this explanation"));
        more.appendChild(renderValue(rest, 1));
        box.appendChild(more);
      }
    }
    const post = p.posterior;
    const left = post.prior_cov_trace > 0 ? post.cov_trace / post.prior_cov_trace : 1;
    box.appendChild(
      el(
        "p",
        "Your preferences are described by " + post.k + " personal weights. They are " +
          num(post.distance_from_prior) + " standard units away from the population's" +
          (post.distance_from_prior < 0.5 ? " (close to people in general)." : ".") +
          " Remaining uncertainty: " + Math.round(100 * left) + "% of what it was before anything was known about you."
      )
    );
    const weights = el("details");
    weights.appendChild(el("summary", "The weights themselves"));
    weights.appendChild(el("p", post.mean.map((x) => num(x)).join(", ")));
    box.appendChild(weights);
  }

  function renderBounds(p) {
    const box = $("bounds");
    box.replaceChildren();
    const ex = p.explanation;
    if (ex && ex.bounds) {
      const rest = Object.assign({}, ex.bounds);
      if (typeof rest.summary === "string") box.appendChild(el("p", rest.summary));
      delete rest.summary;
      if (Object.keys(rest).length) box.appendChild(renderValue(rest));
    }
    const tr = p.monitors && p.monitors.trust_region;
    if (tr) {
      box.appendChild(
        el(
          "p",
          tr.outside
            ? "Your personal weights go further from the population than the service allows (distance " +
                num(tr.distance) + ", limit " + num(tr.rho) + "): your answers are scored with weights pulled back " +
                "inside that limit (a shift of " + num(tr.projected_shift) + ")."
            : "Your personal weights are within the distance from the population the service allows (" +
                num(tr.distance) + " of at most " + num(tr.rho) + "): the bounds did not change how your answers are scored."
        )
      );
    } else if (!(ex && ex.bounds)) {
      box.appendChild(el("p", "This service runs without a bounds policy: nothing limits how your answers are scored."));
    }
  }

  const MONITOR_NAMES = { lock_in: "Value lock-in", bubble: "Filter bubble", filter_bubble: "Filter bubble" };

  function monitorText(name, m) {
    const label = MONITOR_NAMES[name] || name.replace(/_/g, " ");
    if (m === null || m === undefined) return label + ": not checked yet (too few judgments).";
    if (typeof m !== "object") return label + ": " + m;
    if (m.note && !m.flag) return label + ": not checked yet (" + m.note + ").";
    if (name === "lock_in") {
      return m.flag
        ? "Value lock-in: warning. Your recent judgments disagree with what the model believed from your earlier ones" +
            (typeof m.drift === "number" ? " (accuracy fell by " + num(m.drift) + ")" : "") +
            ", or it is more confident than your recent answers justify. Your views may have changed; consider a reset."
        : "Value lock-in: no sign. The model's picture of you still explains your recent judgments.";
    }
    if (name === "bubble" || name === "filter_bubble") {
      return m.flag
        ? "Filter bubble: warning. What you are shown is much less varied than what people in general are shown."
        : "Filter bubble: no sign. What you are shown is about as varied as for people in general.";
    }
    if (name === "trust_region") return null; // said under the bounds
    return label + ": " + (m.flag ? "warning" : "no sign") + ".";
  }

  function renderMonitors(p) {
    const box = $("monitors");
    box.replaceChildren();
    const all = Object.assign({}, p.monitors || {}, (p.explanation && p.explanation.monitors) || {});
    const ul = el("ul");
    Object.keys(all).forEach((name) => {
      const text = monitorText(name, all[name]);
      if (!text) return;
      const li = el("li", text);
      if (all[name] && typeof all[name] === "object") {
        const more = el("details");
        more.appendChild(el("summary", "Numbers"));
        more.appendChild(renderValue(all[name], 1));
        li.appendChild(more);
      }
      ul.appendChild(li);
    });
    if (!ul.children.length) ul.appendChild(el("li", "No checks are available for this profile."));
    box.appendChild(ul);
  }

  // ------------------------------------------------------------------------------------------ judgments
  function judgmentText(j) {
    const about = j.prompt ? "For \u201c" + j.prompt + "\u201d: " : "";
    if (j.kind === "comparison") {
      return about + (j.tie ? "you found \u201c" + j.chosen + "\u201d and \u201c" + j.rejected + "\u201d equally good"
        : "you preferred \u201c" + j.chosen + "\u201d over \u201c" + j.rejected + "\u201d");
    }
    return about + "you rated \u201c" + j.response + "\u201d " + num(j.rating);
  }

  async function loadJudgments() {
    const page = await call("GET", "/judgments?limit=" + PAGE + "&offset=" + offset);
    const body = $("judgments").querySelector("tbody");
    body.replaceChildren();
    page.judgments.forEach((j) => {
      const tr = el("tr");
      tr.dataset.judgmentId = j.id;
      tr.appendChild(el("td", j.id));
      tr.appendChild(el("td", j.created_at.replace("T", " ").slice(0, 19)));
      tr.appendChild(el("td", judgmentText(j)));
      const td = el("td");
      const b = el("button", "Undo");
      b.type = "button";
      b.className = "undo";
      b.setAttribute("aria-label", "Undo judgment " + j.id);
      b.addEventListener("click", () => undo(j.id));
      td.appendChild(b);
      tr.appendChild(td);
      body.appendChild(tr);
    });
    const shown = page.judgments.length;
    $("judgments-summary").textContent = page.total
      ? "Showing " + (shown ? offset + 1 : 0) + "\u2013" + (offset + shown) + " of " + page.total + " (oldest first)."
      : "No judgments stored.";
    $("judgments").hidden = !page.total;
    $("prev").disabled = offset === 0;
    $("next").disabled = offset + shown >= page.total;
    $("pager").hidden = page.total <= PAGE;
  }

  async function load() {
    fail("");
    try {
      const p = await call("GET", "");
      lastProfile = p;
      showSignedIn(true);
      $("origin").textContent = originText(p);
      renderBelief(p);
      renderBounds(p);
      renderMonitors(p);
      await loadJudgments();
      document.body.dataset.loaded = String(Date.now());
    } catch (err) {
      showSignedIn(false);
      fail(explainError(err));
    }
  }

  // --------------------------------------------------------------------------------------------- actions
  function confirmAction(text) {
    return new Promise((resolve) => {
      const d = $("confirm");
      $("confirm-text").textContent = text;
      d.addEventListener("close", () => resolve(d.returnValue === "ok"), { once: true });
      d.returnValue = "";
      d.showModal();
      $("confirm-cancel").focus();
    });
  }

  async function act(work, done) {
    fail("");
    try {
      await work();
      if (done) say(done);
    } catch (err) {
      fail(explainError(err));
    }
  }

  function undo(id) {
    act(async () => {
      await call("DELETE", "/judgments/" + id);
      await load();
    }, "Judgment " + id + " undone: your profile was recomputed without it.");
  }

  async function reset() {
    if (!(await confirmAction("Reset deletes all your judgments and serves you what fits people in general. Your key keeps working."))) return;
    act(async () => {
      const r = await call("POST", "/reset");
      offset = 0;
      await load();
      return r;
    }, "Reset done: you are now served the population's preferences.");
  }

  function download() {
    act(async () => {
      const resp = await call("GET", "/export", { raw: true });
      const blob = await resp.blob();
      const m = /filename="([^"]+)"/.exec(resp.headers.get("Content-Disposition") || "");
      const a = el("a");
      a.href = URL.createObjectURL(blob);
      a.download = m ? m[1] : "personalign-export.json";
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 10000);
    }, "Download started: a JSON file with everything stored about you.");
  }

  async function remove() {
    if (!(await confirmAction("Delete everything stored about you: judgments, profile and keys. This cannot be undone, and your key will stop working."))) return;
    act(async () => {
      const r = await call("DELETE", "");
      sessionStorage.removeItem(storeKey);
      showSignedIn(false);
      $("signin").hidden = true;
      const plural = (n, word) => n + " " + word + (n === 1 ? "" : "s");
      say("Everything stored about you was deleted (" + plural(r.deleted.judgments, "judgment") + ", " +
        plural(r.deleted.keys, "key") + "). Your key no longer works." +
        (lastProfile && lastProfile.trained
          ? " The model itself was trained on data that included you; that is part of the model, not of what" +
            " this service stores, so the service would start from it again."
          : ""));
      document.body.dataset.deleted = "1";
    }, null);
  }

  // ---------------------------------------------------------------------------------------------- wiring
  document.addEventListener("DOMContentLoaded", () => {
    $("signin-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      sessionStorage.setItem(storeKey, $("key").value.trim());
      $("key").value = "";
      say("");
      load();
    });
    $("signout").addEventListener("click", () => {
      sessionStorage.removeItem(storeKey);
      showSignedIn(false);
      say("Signed out.");
    });
    $("prev").addEventListener("click", () => { offset = Math.max(0, offset - PAGE); loadJudgments(); });
    $("next").addEventListener("click", () => { offset += PAGE; loadJudgments(); });
    $("download").addEventListener("click", download);
    $("reset").addEventListener("click", reset);
    $("delete").addEventListener("click", remove);
    if (sessionStorage.getItem(storeKey)) load();
  });
})();
