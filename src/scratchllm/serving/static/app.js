// scratchllm playground: streams from the server's own OpenAI-style API and shows, for every
// token, how likely the model found it and what else it considered; then where it looked.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  info: null,             // GET /health
  mode: "completion",     // or "chat"
  messages: [],           // the chat so far
  controller: null,       // aborts the running request
  attention: null,        // the last /attention answer
  text: "",               // the text the attention map is drawn for
};

// -- talking to the server ----------------------------------------------------------------

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value || localStorage.getItem("scratchllm-key");
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

async function post(path, body, signal) {
  const response = await fetch(path, {
    method: "POST", headers: headers(), body: JSON.stringify(body), signal,
  });
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try { message = (await response.json()).error.message; } catch (e) { /* not JSON */ }
    if (response.status === 401) $("key-box").hidden = false;
    throw new Error(message);
  }
  return response;
}

// Server-sent events: "data: {...}" blocks separated by a blank line, ending with [DONE].
async function* events(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of block.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        yield chunk;
      }
    }
  }
}

function samplingBody() {
  const body = {
    model: state.info.model,
    temperature: parseFloat($("temperature").value),
    top_p: parseFloat($("top-p").value),
    max_tokens: parseInt($("max-tokens").value, 10) || 16,
    stream: true,
    stream_options: { include_usage: true },
  };
  const topK = parseInt($("top-k").value, 10);
  if (topK > 0) body.top_k = topK;
  const seed = $("seed").value;
  if (seed !== "") body.seed = parseInt(seed, 10);
  const stop = $("stop").value.replace(/\\n/g, "\n").replace(/\\t/g, "\t");
  if (stop) body.stop = [stop];
  return body;
}

// -- tokens, coloured by probability --------------------------------------------------------

function colour(p) {
  // red (unlikely) -> amber -> green (likely), as in the legend
  const hue = p < 0.5 ? 45 * (p / 0.5) : 45 + 75 * ((p - 0.5) / 0.5);
  const light = p < 0.5 ? 80 - 2 * p : 78;
  return `hsl(${hue.toFixed(0)} ${p < 0.5 ? 85 : 55}% ${light.toFixed(0)}%)`;
}

function visible(text) {
  return text.replace(/\n/g, "\u21b5").replace(/\t/g, "\u21e5").replace(/ /g, "\u2423") || "\u2205";
}

function addToken(container, text, logprob, alternatives) {
  const span = document.createElement("span");
  span.className = "tok";
  const p = Math.exp(logprob);
  span.style.background = colour(p);
  span.dataset.p = p;
  span.dataset.text = text;
  span.dataset.alternatives = JSON.stringify(alternatives);
  if (text.includes("\n")) {
    const parts = text.split("\n");
    parts.forEach((part, i) => {
      if (i > 0) {
        const mark = document.createElement("span");
        mark.className = "nl";
        mark.textContent = "\u21b5\n";
        span.appendChild(mark);
      }
      span.appendChild(document.createTextNode(part));
    });
  } else {
    span.textContent = text;
  }
  span.addEventListener("mouseenter", () => showTooltip(span));
  span.addEventListener("mouseleave", hideTooltip);
  container.appendChild(span);
  return span;
}

function showTooltip(span) {
  const tip = $("tooltip");
  const alternatives = JSON.parse(span.dataset.alternatives);
  const chosen = span.dataset.text;
  tip.innerHTML = "";
  const title = document.createElement("div");
  title.className = "title";
  title.textContent = `chosen "${visible(chosen)}" with p = ${(100 * span.dataset.p).toFixed(1)}%` +
    " \u00b7 the model's top choices:";
  tip.appendChild(title);
  for (const alt of alternatives) {
    const row = document.createElement("div");
    row.className = "alt" + (alt.token === chosen ? " chosen" : "");
    const p = Math.exp(alt.logprob);
    const code = document.createElement("code");
    code.textContent = visible(alt.token);
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.width = Math.max(2, 100 * p) + "%";
    const pct = document.createElement("span");
    pct.className = "p";
    pct.textContent = (100 * p).toFixed(1) + "%";
    row.append(code, bar, pct);
    tip.appendChild(row);
  }
  const box = span.getBoundingClientRect();
  tip.hidden = false;
  const left = Math.min(box.left, window.innerWidth - tip.offsetWidth - 12);
  const below = box.bottom + 8 + tip.offsetHeight < window.innerHeight;
  tip.style.left = Math.max(8, left) + "px";
  tip.style.top = (below ? box.bottom + 8 : box.top - tip.offsetHeight - 8) + "px";
  span.classList.add("active");
}

function hideTooltip() {
  $("tooltip").hidden = true;
  document.querySelectorAll(".tok.active").forEach((s) => s.classList.remove("active"));
}

// -- one generation -------------------------------------------------------------------------

async function generate() {
  const prompt = $("prompt").value;
  if (state.mode === "chat" && !prompt.trim()) return;
  setBusy(true);
  $("error").hidden = true;
  $("finish").innerHTML = "";
  const controller = new AbortController();
  state.controller = controller;
  let target, path, body = samplingBody();
  if (state.mode === "chat") {
    state.messages.push({ role: "user", content: prompt });
    bubble("user").textContent = prompt;
    target = bubble("assistant");
    $("prompt").value = "";
    path = "/v1/chat/completions";
    body = { ...body, messages: state.messages, logprobs: true, top_logprobs: 5 };
  } else {
    target = $("output");
    target.innerHTML = "";
    const shown = document.createElement("span");
    shown.className = "prompt";
    shown.textContent = prompt;
    target.appendChild(shown);
    path = "/v1/completions";
    body = { ...body, prompt, logprobs: 5 };
  }
  const started = performance.now();
  let first = null, count = 0, reply = "";
  try {
    const response = await post(path, body, controller.signal);
    for await (const chunk of events(response)) {
      if (chunk.usage) showStats(chunk.usage, started, first);
      for (const choice of chunk.choices) {
        for (const token of tokensOf(choice)) {
          if (first === null) first = performance.now();
          addToken(target, token.text, token.logprob, token.alternatives);
          reply += token.text;
          count += 1;
        }
        if (choice.finish_reason) showFinish(choice.finish_reason);
      }
      showLive(count, started, first);
    }
  } catch (e) {
    if (e.name === "AbortError") showFinish("stopped");
    else showError(e.message);
  } finally {
    if (state.mode === "chat") {
      state.messages.push({ role: "assistant", content: reply });
      state.text = prompt + "\n" + reply;
    } else {
      state.text = prompt + reply;
    }
    state.controller = null;
    setBusy(false);
  }
  if (state.info.attention) await showAttention();
}

// Each streamed chunk's tokens as {text, logprob, alternatives: [{token, logprob}]}.
function tokensOf(choice) {
  if (choice.delta !== undefined) {   // chat
    const content = (choice.logprobs && choice.logprobs.content) || [];
    return content.map((t) => ({ text: t.token, logprob: t.logprob, alternatives: t.top_logprobs }));
  }
  const lp = choice.logprobs;
  if (!lp) return choice.text ? [{ text: choice.text, logprob: 0, alternatives: [] }] : [];
  return lp.tokens.map((text, i) => ({
    text,
    logprob: lp.token_logprobs[i],
    alternatives: Object.entries(lp.top_logprobs[i]).map(([token, logprob]) => ({ token, logprob })),
  }));
}

function bubble(role) {
  const log = $("output");
  if (log.querySelector(".placeholder, .prompt")) log.innerHTML = "";
  const div = document.createElement("div");
  div.className = "bubble " + role;
  log.appendChild(div);
  return div;
}

function setBusy(busy) {
  $("generate").disabled = busy;
  $("stop-button").hidden = !busy;
}

function showLive(count, started, first) {
  if (first === null) return;
  const seconds = (performance.now() - first) / 1000;
  const rate = seconds > 0 ? (count - 1) / seconds : 0;
  $("stats").textContent = `${count} tokens \u00b7 first after ${(first - started).toFixed(0)} ms` +
    (count > 1 ? ` \u00b7 ${rate.toFixed(0)} tokens/s` : "");
}

function showStats(usage, started, first) {
  const total = ((performance.now() - started) / 1000).toFixed(2);
  $("stats").textContent += ` \u00b7 ${usage.prompt_tokens} prompt + ${usage.completion_tokens} ` +
    `generated tokens in ${total} s`;
}

function showFinish(reason) {
  const why = {
    stop: "stopped: end of text or a stop sequence",
    length: "stopped: max tokens reached",
    stopped: "stopped by you",
  }[reason] || reason;
  $("finish").innerHTML = "";
  const badge = document.createElement("span");
  badge.className = reason;
  badge.id = "finish-reason";
  badge.dataset.reason = reason;
  badge.textContent = why;
  $("finish").appendChild(badge);
}

function showError(message) {
  $("error").hidden = false;
  $("error").textContent = message;
}

// -- attention ---------------------------------------------------------------------------------

async function showAttention() {
  const text = state.text || $("prompt").value;
  if (!text) return;
  try {
    const response = await post("/attention", { text });
    state.attention = await response.json();
    const a = state.attention;
    $("attention-note").textContent = `${a.count} tokens` +
      (a.dropped ? ` (the first ${a.dropped} left out: the map shows the last ${a.count})` : "");
    drawAttention();
  } catch (e) {
    $("attention-note").textContent = e.message;
  }
}

function drawAttention() {
  const a = state.attention;
  if (!a) return;
  const layer = parseInt($("layer").value, 10) || 0;
  const head = parseInt($("head").value, 10) || 0;
  const map = a.attention[layer][head];
  const T = map.length;
  const canvas = $("attention");
  const ctx = canvas.getContext("2d");
  const label = T <= 40 ? 70 : 0;                   // room for token labels when they fit
  const cell = Math.max(2, Math.floor((canvas.width - label) / T));
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = "#fbfcfe";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  for (let q = 0; q < T; q++) {
    for (let k = 0; k <= q; k++) {
      const w = Math.sqrt(map[q][k]);                // sqrt: small weights stay visible
      ctx.fillStyle = `rgba(59, 91, 219, ${w.toFixed(3)})`;
      ctx.fillRect(label + k * cell, label + q * cell, cell - (cell > 4 ? 1 : 0), cell - (cell > 4 ? 1 : 0));
    }
  }
  if (label) {
    ctx.fillStyle = "#6b7385";
    ctx.font = `${Math.min(12, cell)}px monospace`;
    ctx.textBaseline = "middle";
    for (let i = 0; i < T; i++) {
      const t = visible(a.tokens[i]).slice(0, 6);
      ctx.textAlign = "right";
      ctx.fillText(t, label - 4, label + i * cell + cell / 2);
      ctx.save();
      ctx.translate(label + i * cell + cell / 2, label - 4);
      ctx.rotate(-Math.PI / 2);
      ctx.textAlign = "left";
      ctx.fillText(t, 0, 0);
      ctx.restore();
    }
  }
  ctx.fillStyle = "#3b5bdb";
  ctx.font = "11px sans-serif";
  ctx.textAlign = "left";
  ctx.textBaseline = "top";
  ctx.fillText("key \u2192", 4, 4);
  ctx.fillText("query \u2193", 4, 18);
  canvas.dataset.drawn = `${layer}/${head}/${T}`;
  canvas.dataset.cell = cell;
  canvas.dataset.label = label;
}

function hoverAttention(event) {
  const a = state.attention;
  if (!a) return;
  const canvas = $("attention");
  const box = canvas.getBoundingClientRect();
  const cell = +canvas.dataset.cell, label = +canvas.dataset.label;
  const k = Math.floor((event.clientX - box.left - label) / cell);
  const q = Math.floor((event.clientY - box.top - label) / cell);
  const T = a.tokens.length;
  if (q < 0 || k < 0 || q >= T || k > q) return;
  const map = a.attention[+$("layer").value || 0][+$("head").value || 0];
  $("attention-hover").innerHTML = "";
  const line = document.createElement("div");
  const code = (t) => { const c = document.createElement("code"); c.textContent = visible(t); return c; };
  line.append("token ", code(a.tokens[q]), ` (${q}) takes ${(100 * map[q][k]).toFixed(1)}% from `,
    code(a.tokens[k]), ` (${k})`);
  $("attention-hover").appendChild(line);
}

// -- setting up ----------------------------------------------------------------------------

function setMode(mode) {
  state.mode = mode;
  document.querySelectorAll("#mode button").forEach((b) => b.classList.toggle("on", b.dataset.mode === mode));
  $("new-chat").hidden = mode !== "chat";
  state.messages = [];
  $("output").innerHTML = "";
  $("prompt").placeholder = mode === "chat" ? "Write a message to the model."
    : "Type the beginning of a text; the model continues it.";
}

async function boot() {
  const info = await (await fetch("/health")).json();
  state.info = info;
  const millions = (info.parameters / 1e6).toFixed(info.parameters < 1e6 ? 2 : 1);
  $("model-info").innerHTML = "";
  $("model-info").append(`${info.model} \u00b7 ${info.family} \u00b7 ${millions} M parameters \u00b7 ` +
    `context ${info.context_length} \u00b7 vocabulary ${info.vocab_size}`);
  if (info.chat) {
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = "chat template";
    $("model-info").appendChild(badge);
    $("mode-chat").disabled = false;
    $("mode-chat").title = "";
  }
  $("max-tokens").max = info.max_total_tokens;
  if (info.attention) {
    for (let i = 0; i < info.attention.n_layer; i++) $("layer").add(new Option(String(i), i));
    for (let i = 0; i < info.attention.n_head; i++) $("head").add(new Option(String(i), i));
  } else {
    $("attention-panel").hidden = true;
  }
}

$("temperature").addEventListener("input", (e) => { $("temperature-value").textContent = (+e.target.value).toFixed(2); });
$("top-p").addEventListener("input", (e) => { $("top-p-value").textContent = (+e.target.value).toFixed(2); });
$("temperature-value").textContent = (+$("temperature").value).toFixed(2);
$("generate").addEventListener("click", generate);
$("stop-button").addEventListener("click", () => state.controller && state.controller.abort());
$("new-chat").addEventListener("click", () => { state.messages = []; $("output").innerHTML = ""; });
$("prompt").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey || state.mode === "chat") && !e.shiftKey) {
    e.preventDefault();
    if (!$("generate").disabled) generate();
  }
});
document.querySelectorAll("#mode button").forEach((b) => b.addEventListener("click", () => setMode(b.dataset.mode)));
$("layer").addEventListener("change", drawAttention);
$("head").addEventListener("change", drawAttention);
$("attention-button").addEventListener("click", showAttention);
$("attention").addEventListener("mousemove", hoverAttention);
$("api-key").addEventListener("change", (e) => localStorage.setItem("scratchllm-key", e.target.value));
boot().catch((e) => showError("cannot reach the server: " + e.message));
