/* recsage web page: vanilla JS, no build step.
 * Data from the service is only ever put into the page with textContent / attributes of
 * elements created here (never innerHTML), so titles and other user text stay text.
 * State-changing calls send the page's CSRF token in the X-CSRF-Token header; the API key
 * never reaches this script (the server keeps it behind the HttpOnly session cookie). */
"use strict";

(function () {
  function csrf() {
    const m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.getAttribute("content") : "";
  }

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = String(v);
      else if (k === "className") node.className = v;
      else node.setAttribute(k, String(v));
    }
    for (const c of children || []) if (c) node.appendChild(c);
    return node;
  }

  async function call(url, body, options) {
    const init = {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
      body: JSON.stringify(body || {}),
    };
    if (options && options.get) {
      init.method = "GET";
      delete init.body;
      init.headers = { Accept: "application/json" };
    }
    if (options && options.keepalive) init.keepalive = true;
    const r = await fetch(url, init);
    if (r.status === 401) {
      window.location.assign("/ui/login");
      throw new Error("signed out");
    }
    let data = null;
    try {
      data = await r.json();
    } catch (e) {
      data = null;
    }
    if (!r.ok) {
      const msg = data && data.error ? data.error.message : "request failed (" + r.status + ")";
      throw new Error(msg);
    }
    return data;
  }

  function say(id, text, isError) {
    const node = document.getElementById(id);
    if (!node) return;
    node.textContent = text;
    node.classList.toggle("error", Boolean(isError));
  }

  function itemLink(item) {
    return el("a", {
      href: "/ui/items/" + encodeURIComponent(item.item_id),
      className: "title",
      text: item.title,
    });
  }

  function meta(item) {
    const parts = [];
    const year = item.year ? "(" + item.year + ")" : "";
    if (year && !String(item.title).endsWith(year)) {
      parts.push(el("span", { className: "year", text: year }));
    }
    if (item.categories && item.categories.length) {
      const ul = el("ul", { className: "cats", "aria-label": "Categories" });
      for (const c of item.categories) ul.appendChild(el("li", { text: c }));
      parts.push(ul);
    }
    return parts;
  }

  function compactList(listId, items) {
    const ol = document.getElementById(listId);
    ol.replaceChildren();
    for (const it of items) {
      const li = el("li", { "data-item": it.item_id }, [itemLink(it), ...meta(it)]);
      ol.appendChild(li);
    }
  }

  // ---- the visitor's page ------------------------------------------------------------------
  function home() {
    const panel = document.getElementById("recs-panel");
    const canFeedback = panel && panel.dataset.feedback === "yes";
    let shown = [];
    let requestId = null;

    function card(item, index, fresh) {
      const badges = el("div", { className: "badges", "aria-label": "Found by" });
      item.sources.forEach(function (src, j) {
        const kind = (item.kinds && item.kinds[j]) || "other";
        badges.appendChild(
          el("span", { className: "badge kind-" + kind.replace(/[^a-z]/g, ""), title: kind, text: src })
        );
      });
      const reasons = el("ul", { className: "reasons", "aria-label": "Why" });
      for (const r of item.reasons) reasons.appendChild(el("li", { text: r.detail }));
      const head = el("div", { className: "head" }, [
        el("span", { className: "rank", text: String(item.rank) }),
        itemLink(item),
        ...meta(item),
      ]);
      const li = el("li", { className: fresh ? "rec new" : "rec", "data-item": item.item_id }, [
        head,
        badges,
        reasons,
      ]);
      if (canFeedback) {
        const actions = el("div", { className: "actions" }, [
          el("button", { type: "button", className: "fb like", "data-action": "like",
                         "aria-label": "Like " + item.title, text: "Like" }),
          el("button", { type: "button", className: "fb dislike", "data-action": "dislike",
                         "aria-label": "Dislike " + item.title, text: "Dislike" }),
        ]);
        li.appendChild(actions);
      }
      li.dataset.position = String(index);
      return li;
    }

    async function load(note) {
      try {
        const data = await call("/ui/api/recommend", { n: 10 });
        const before = new Set(shown);
        const ol = document.getElementById("recs");
        ol.replaceChildren();
        data.items.forEach(function (it, i) {
          ol.appendChild(card(it, i, before.size > 0 && !before.has(it.item_id)));
        });
        const fresh = data.items.filter((it) => before.size > 0 && !before.has(it.item_id)).length;
        shown = data.items.map((it) => it.item_id);
        requestId = data.request_id;
        const label = document.getElementById("recs-label");
        label.textContent = data.label;
        label.classList.toggle("cold", data.cold_start);
        label.dataset.cold = data.cold_start ? "yes" : "no";
        if (note) say("recs-status", note + " The list changed: " + fresh + " new item(s).");
      } catch (e) {
        say("recs-status", e.message, true);
      }
    }

    async function feedback(action, itemId, position, title) {
      const data = await call("/ui/api/feedback", {
        action: action, item_id: itemId, position: position, request_id: requestId,
      });
      const verb = action === "like" ? "Liked" : action === "dislike" ? "Hidden" : "Clicked";
      const note = data.duplicates ? "Already recorded." : verb + " “" + title + "”.";
      return note;
    }

    if (document.getElementById("recs")) {
      document.getElementById("recs").addEventListener("click", async function (ev) {
        const target = ev.target instanceof Element ? ev.target : null;
        if (!target) return;
        const li = target.closest("li.rec");
        if (!li) return;
        const title = (li.querySelector("a.title") || {}).textContent || "";
        const button = target.closest("button.fb");
        if (button) {
          button.disabled = true;
          try {
            const note = await feedback(button.dataset.action, li.dataset.item,
                                        Number(li.dataset.position), title);
            await load(note);
          } catch (e) {
            say("recs-status", e.message, true);
            button.disabled = false;
          }
        } else if (target.closest("a.title") && canFeedback) {
          // a click on a title is a click event; the navigation goes on meanwhile
          call("/ui/api/feedback", {
            action: "click", item_id: li.dataset.item, position: Number(li.dataset.position),
            request_id: requestId,
          }, { keepalive: true }).catch(function () {});
        }
      });
      load(null);
    }

    const searchForm = document.getElementById("search-form");
    searchForm.addEventListener("submit", async function (ev) {
      ev.preventDefault();
      const q = document.getElementById("search-q").value.trim();
      if (!q) return;
      say("search-status", "Searching…");
      try {
        const data = await call("/ui/api/search", { query: q });
        compactList("search-results", data.items);
        say("search-status", data.items.length + " result(s)" +
            (data.personalised ? ", blended with your taste." : "."));
      } catch (e) {
        say("search-status", e.message, true);
      }
    });

    const chatLog = document.getElementById("chat-log");
    function renderChat(data) {
      const chips = document.getElementById("chat-chips");
      chips.replaceChildren();
      for (const chip of data.chips) {
        const b = el("button", { type: "button", className: "chip-x", "data-chip": chip.id,
                                 "aria-label": "Remove constraint " + chip.label, text: "×" });
        chips.appendChild(el("span", { className: "chip kind-" + chip.kind, "data-chip": chip.id }, [
          el("span", { text: chip.label }), b,
        ]));
      }
      compactList("chat-results", data.items);
    }
    function logLine(who, text) {
      chatLog.appendChild(el("p", { className: "msg " + who }, [
        el("strong", { text: who === "you" ? "you: " : "recsage: " }),
        el("span", { text: text }),
      ]));
      chatLog.scrollTop = chatLog.scrollHeight;
    }
    document.getElementById("chat-form").addEventListener("submit", async function (ev) {
      ev.preventDefault();
      const input = document.getElementById("chat-msg");
      const message = input.value.trim();
      if (!message) return;
      logLine("you", message);
      input.value = "";
      say("chat-status", "Thinking…");
      try {
        const data = await call("/ui/api/chat", { message: message });
        logLine("bot", "understood: " + data.understood);
        renderChat(data);
        say("chat-status", data.items.length + " suggestion(s).");
      } catch (e) {
        say("chat-status", e.message, true);
      }
    });
    document.getElementById("chat-chips").addEventListener("click", async function (ev) {
      const target = ev.target instanceof Element ? ev.target.closest("button.chip-x") : null;
      if (!target) return;
      try {
        const data = await call("/ui/api/chat/remove", { chip: target.dataset.chip });
        logLine("bot", "understood: " + data.understood);
        renderChat(data);
        say("chat-status", "Constraint removed; " + data.items.length + " suggestion(s).");
        const first = document.querySelector("#chat-chips button");
        (first || document.getElementById("chat-msg")).focus();
      } catch (e) {
        say("chat-status", e.message, true);
      }
    });
    document.getElementById("chat-reset").addEventListener("click", async function () {
      try {
        await call("/ui/api/chat/reset", {});
        chatLog.replaceChildren();
        renderChat({ chips: [], items: [] });
        say("chat-status", "New conversation.");
      } catch (e) {
        say("chat-status", e.message, true);
      }
    });
  }

  // ---- an item's page ----------------------------------------------------------------------
  function item() {
    const box = document.querySelector(".actions[data-item]");
    if (!box) return;
    const title = document.getElementById("item-title").textContent;
    box.addEventListener("click", async function (ev) {
      const b = ev.target instanceof Element ? ev.target.closest("button.fb") : null;
      if (!b) return;
      try {
        const data = await call("/ui/api/feedback", { action: b.dataset.action,
                                                     item_id: box.dataset.item });
        say("item-status", (data.duplicates ? "Already recorded: " : "Recorded: ") +
            b.dataset.action + " “" + title.trim() + "”.");
      } catch (e) {
        say("item-status", e.message, true);
      }
    });
  }

  // ---- the operator's page -----------------------------------------------------------------
  const COLORS = ["#2563eb", "#d97706", "#dc2626"];

  function chart(canvas, times, series) {
    const ctx = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height, pad = { l: 44, r: 8, t: 8, b: 20 };
    ctx.clearRect(0, 0, w, h);
    ctx.font = "11px system-ui, sans-serif";
    let max = 0;
    for (const s of series) for (const v of s.values) if (v !== null && v > max) max = v;
    max = max > 0 ? max * 1.15 : 1;
    const x = (i) => pad.l + (times.length > 1 ? (i / (times.length - 1)) * (w - pad.l - pad.r) : 0);
    const y = (v) => h - pad.b - (v / max) * (h - pad.t - pad.b);
    ctx.strokeStyle = "#ccc";
    ctx.fillStyle = "#555";
    for (let g = 0; g <= 4; g++) {
      const v = (max * g) / 4;
      ctx.beginPath();
      ctx.moveTo(pad.l, y(v));
      ctx.lineTo(w - pad.r, y(v));
      ctx.stroke();
      ctx.fillText(v >= 100 ? v.toFixed(0) : v.toFixed(v >= 10 ? 1 : 2), 2, y(v) + 4);
    }
    if (times.length > 1) {
      const span = Math.round(times[times.length - 1] - times[0]);
      ctx.fillText("last " + span + " s", pad.l, h - 4);
    }
    series.forEach(function (s, k) {
      ctx.strokeStyle = COLORS[k % COLORS.length];
      ctx.lineWidth = 2;
      ctx.beginPath();
      let started = false;
      s.values.forEach(function (v, i) {
        if (v === null) { started = false; return; }
        if (!started) ctx.moveTo(x(i), y(v)); else ctx.lineTo(x(i), y(v));
        started = true;
      });
      ctx.stroke();
      if (series.length > 1) {
        ctx.fillStyle = COLORS[k % COLORS.length];
        ctx.fillText(s.label, w - pad.r - 40 * (series.length - k), pad.t + 10);
      }
    });
    ctx.lineWidth = 1;
  }

  function admin() {
    const rps = document.getElementById("chart-rps");
    if (!rps) return;
    function fmt(v, unit) { return v === null || v === undefined ? "–" : v.toFixed(1) + unit; }
    async function poll() {
      try {
        const data = await call("/ui/api/admin/stats", null, { get: true });
        const pts = data.points;
        const times = pts.map((p) => p.t);
        chart(rps, times, [{ label: "req/s", values: pts.map((p) => p.rps) }]);
        chart(document.getElementById("chart-latency"), times, [
          { label: "p50", values: pts.map((p) => p.p50_ms) },
          { label: "p95", values: pts.map((p) => p.p95_ms) },
          { label: "p99", values: pts.map((p) => p.p99_ms) },
        ]);
        chart(document.getElementById("chart-events"), times,
              [{ label: "events/min", values: pts.map((p) => p.events_per_min) }]);
        const last = pts.length ? pts[pts.length - 1] : null;
        say("live-summary", last
          ? "Now: " + last.rps.toFixed(2) + " req/s, p50 " + fmt(last.p50_ms, " ms") + ", p95 " +
            fmt(last.p95_ms, " ms") + ", p99 " + fmt(last.p99_ms, " ms") + ", " +
            last.events_per_min.toFixed(1) + " feedback events/min; " + data.total_requests +
            " API requests since start."
          : "Collecting… (" + data.total_requests + " API requests since start)");
        const byRoute = document.querySelector("#errors-by-route tbody");
        byRoute.replaceChildren();
        for (const e of data.errors_by_route) {
          byRoute.appendChild(el("tr", {}, [
            el("td", { text: e.method + " " + e.route }), el("td", { text: e.status }),
            el("td", { text: String(e.total) }), el("td", { text: String(e.in_window) }),
          ]));
        }
        const logBody = document.querySelector("#error-log tbody");
        logBody.replaceChildren();
        for (const r of data.recent_errors) {
          logBody.appendChild(el("tr", {}, [
            el("td", { text: new Date(r.t * 1000).toLocaleTimeString() }),
            el("td", { text: r.level }),
            el("td", { text: r.message + (r.error ? " (" + r.error + ")" : "") }),
          ]));
        }
      } catch (e) {
        say("live-summary", e.message, true);
      }
    }
    poll();
    window.setInterval(poll, 2000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    const pageName = document.body.dataset.page;
    if (pageName === "home") home();
    else if (pageName === "item") item();
    else if (pageName === "admin") admin();
  });
})();
