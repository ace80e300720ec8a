// duetto gateway dashboard: polls /dashboard/data and draws with <canvas>. No dependencies.
"use strict";
const POLL_MS = 2000, HISTORY = 150;
const history = [];

const fmt = {
  int: (v) => (v == null ? "–" : Math.round(v).toLocaleString("en-US")),
  usd: (v) => (v == null ? "–" : v < 0.01 ? v.toExponential(2) : v.toFixed(4)),
  pct: (v) => (v == null ? "–" : (100 * v).toFixed(1) + "%"),
  ms: (v) => (v == null ? "–" : v.toFixed(1)),
  num: (v) => (v == null ? "–" : v.toFixed(2)),
  bytes: (v) => {
    if (v == null) return "–";
    const u = ["B", "kB", "MB", "GB", "TB"]; let i = 0;
    while (v >= 1000 && i < u.length - 1) { v /= 1000; i++; }
    return v.toFixed(i ? 1 : 0) + " " + u[i];
  },
};

function set(id, text) { document.getElementById(id).textContent = text; }

function draw(id, series, colors) {
  const c = document.getElementById(id);
  const w = (c.width = c.clientWidth * devicePixelRatio), h = (c.height = c.clientHeight * devicePixelRatio);
  const g = c.getContext("2d");
  g.clearRect(0, 0, w, h);
  let max = 0;
  for (const s of series) for (const v of s) if (v != null && v > max) max = v;
  if (max <= 0) max = 1;
  g.fillStyle = "#8b98a5"; g.font = 11 * devicePixelRatio + "px sans-serif";
  g.fillText(max < 0.01 ? max.toExponential(1) : max.toFixed(max < 10 ? 2 : 0), 4, 12 * devicePixelRatio);
  series.forEach((s, k) => {
    g.strokeStyle = colors[k]; g.lineWidth = 2 * devicePixelRatio; g.beginPath();
    let started = false;
    s.forEach((v, i) => {
      if (v == null) return;
      const x = (i / Math.max(1, HISTORY - 1)) * w, y = h - (v / max) * (h - 16 * devicePixelRatio) - 2;
      if (!started) { g.moveTo(x, y); started = true; } else g.lineTo(x, y);
    });
    g.stroke();
    const last = s.length - 1;  // mark the latest value (a single point draws no line)
    if (last >= 0 && s[last] != null) {
      const x = (last / Math.max(1, HISTORY - 1)) * w, y = h - (s[last] / max) * (h - 16 * devicePixelRatio) - 2;
      g.fillStyle = colors[k]; g.beginPath(); g.arc(x, y, 3 * devicePixelRatio, 0, 2 * Math.PI); g.fill();
    }
  });
}

function render(d) {
  set("requests", fmt.int(d.requests));
  set("rate", fmt.num(d.rate_rps));
  set("llm_share", fmt.pct(d.llm_share));
  set("cost", fmt.usd(d.cost_usd));
  set("llm_only", fmt.usd(d.llm_only_cost_usd));
  set("saved", fmt.usd(d.saved_usd));
  set("latency", fmt.ms(d.p50_ms) + " / " + fmt.ms(d.p95_ms));
  set("bytes", fmt.bytes(d.remote_bytes));
  set("energy", fmt.num(d.energy_j));
  set("leaks", fmt.int(d.pii_sent) + " / " + fmt.pct(d.leak_rate));
  set("fallbacks", fmt.int(d.fallbacks) + " (" + fmt.int(d.rescued) + ")");
  set("errors", fmt.int(d.errors));
  const rows = d.strategies.map((s) =>
    "<tr><td>" + s.name.replace(/[<>&]/g, "") + "</td><td>" + fmt.int(s.requests) + "</td><td>" + fmt.pct(s.llm_share) +
    "</td><td>" + fmt.usd(s.cost_usd) + "</td><td>" + fmt.usd(s.llm_only_cost_usd) + "</td><td class='good'>" + fmt.usd(s.saved_usd) +
    "</td><td>" + fmt.ms(s.p50_ms) + "</td><td>" + fmt.ms(s.p95_ms) + "</td><td>" + fmt.bytes(s.remote_bytes) +
    "</td><td>" + fmt.num(s.energy_j) + "</td><td>" + fmt.int(s.pii_sent) + "</td><td>" + fmt.int(s.fallbacks) +
    "</td><td" + (s.errors ? " class='bad'" : "") + ">" + fmt.int(s.errors) + "</td></tr>");
  document.getElementById("strategies").innerHTML = rows.join("");
  if (d.loop) renderLoop(d.loop);
  history.push(d);
  while (history.length > HISTORY) history.shift();
  draw("c_rate", [history.map((x) => x.rate_rps)], ["#4fc3f7"]);
  draw("c_cost", [history.map((x) => x.cost_usd), history.map((x) => x.llm_only_cost_usd)], ["#4fc3f7", "#e57373"]);
  draw("c_lat", [history.map((x) => x.p50_ms), history.map((x) => x.p95_ms)], ["#81c784", "#ffb74d"]);
  draw("c_share", [history.map((x) => x.llm_share)], ["#ba68c8"]);
  set("status", "live · updated " + new Date().toLocaleTimeString() + (d.llm ? " · LLM: " + d.llm : ""));
  document.body.dataset.ready = "1";
}

// the live loop (duetto.loop): audited quality against the target, and the controller
function renderLoop(l) {
  const rows = Object.entries(l.strategies).map(([name, s]) => {
    const q = s.quality || {};
    const low = q.below_target ? " class='bad'" : "";
    return "<tr><td>" + name.replace(/[<>&]/g, "") + "</td><td" + low + ">" + fmt.num(q.mean) +
      "</td><td>" + fmt.num(q.ci_low) + "–" + fmt.num(q.ci_high) + "</td><td>" + fmt.num(q.target) +
      "</td><td>" + fmt.int(q.n) + "</td><td>" + fmt.pct(s.llm_share) + "</td><td class='good'>" + fmt.pct(s.saving) +
      "</td><td>" + fmt.num(s.threshold) + "</td><td>" + fmt.int(s.threshold_moves) + "</td></tr>";
  });
  document.getElementById("loop").innerHTML = rows.join("");
  const queues = Object.entries(l.queues).map(([n, q]) => n + ": " + q.depth + "/" + q.size + ", dropped " + q.dropped);
  set("loop_queues", "queues — " + (queues.join(" · ") || "none") + " · judge calls " + fmt.int(l.judge_calls) +
    " · loop cost " + fmt.usd(l.loop_cost_usd) + " USD");
}

async function poll() {
  try {
    const r = await fetch("/dashboard/data", { cache: "no-store" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    render(await r.json());
  } catch (e) {
    set("status", "disconnected: " + e.message);
  }
  setTimeout(poll, POLL_MS);
}
poll();
