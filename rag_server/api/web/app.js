// The page: ask (streamed over SSE), see citations, route, timings and cost; browse documents; give feedback.
// Everything shown comes from the API and goes into the page as text (textContent), never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "rag-server.api-key";
const DOMAIN_STORE = "rag-server.domain";
const PAGE_SIZE = 10;
// A citation marker: [2], or [1, 3] for several.
const MARKER = /\[(\d+(?:\s*,\s*\d+)*)\]/g;

const state = { answer: "", evidence: new Map(), citations: new Map(), requestId: null, offset: 0 };

// An element with properties (textContent, className, ...) and children.
function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

function headers(json) {
  const result = {};
  if (json) result["Content-Type"] = "application/json";
  const key = $("api-key").value.trim();
  if (key) result.Authorization = `Bearer ${key}`;
  return result;
}

// The API's error shape: {"error": {"code", "message", ...}}; anything else by its status.
async function failure(response) {
  let message = response.statusText || "request failed";
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) message = body.error.message;
  } catch (_) {
    // not JSON: keep the status text
  }
  return new Error(`${response.status}: ${message}`);
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers(options.body !== undefined) });
  if (!response.ok) throw await failure(response);
  return response;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

// Server-sent events from a fetch() body (EventSource cannot POST): {name, data} per frame.
async function* events(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of frame.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield { name, data: JSON.parse(data.join("\n")) };
    }
  }
}

// --- the answer -------------------------------------------------------------------------------------------

function fact(list, term, value, id) {
  const dd = el("dd", { textContent: String(value) });
  if (id) dd.id = id;
  list.append(el("dt", { textContent: term }), dd);
}

function citeButton(number) {
  const button = el("button", { type: "button", className: "cite", textContent: `[${number}]` });
  button.dataset.number = number;
  button.addEventListener("click", () => showPassage(number));
  return button;
}

// The answer as text, its [n] markers as buttons that open the passage.
function renderAnswer() {
  const parts = [];
  let last = 0;
  for (const match of state.answer.matchAll(MARKER)) {
    parts.push(state.answer.slice(last, match.index));
    const numbers = match[1].split(",").map(Number);
    if (numbers.every((number) => state.evidence.has(number))) parts.push(...numbers.map(citeButton));
    else parts.push(match[0]);
    last = match.index + match[0].length;
  }
  parts.push(state.answer.slice(last));
  $("answer").replaceChildren(...parts);
}

function showPassage(number) {
  const citation = state.citations.get(number);
  const evidence = state.evidence.get(number);
  const source = evidence || citation;
  if (!source) return;
  $("passage-title").textContent = `[${number}] ${source.title || source.ref}`;
  $("passage-snippet").textContent = citation ? citation.snippet : "";
  $("passage-snippet").hidden = !citation;
  $("passage-support").textContent = citation
    ? `${citation.supported ? "supported" : "unsupported"} by the passage (support ${citation.support.toFixed(2)})`
    : "";
  $("passage-text").textContent = evidence ? evidence.text : "";
  const sql = (evidence && evidence.sql) || (citation && citation.sql);
  $("passage-sql").textContent = sql || "";
  $("passage-sql").hidden = !sql;
  $("passage").hidden = false;
  $("passage").dataset.number = number;
  for (const button of document.querySelectorAll(".cite")) {
    button.classList.toggle("active", Number(button.dataset.number) === number);
  }
}

function addCitation(citation) {
  state.citations.set(citation.number, citation);
  const label = citation.title || citation.ref;
  const item = el("li", {}, citeButton(citation.number), " ", el("span", { textContent: label }));
  if (!citation.supported) item.append(" ", el("em", { className: "warn", textContent: "unsupported" }));
  $("citations").append(item);
  renderAnswer();
}

function showRoute(data) {
  state.requestId = data.request_id || state.requestId;
  const facts = $("facts");
  facts.replaceChildren();
  fact(facts, "Route", data.route || "none", "fact-route");
  if (data.routing) {
    fact(facts, "Decided by", data.routing.decided_by, "fact-decided-by");
    fact(facts, "Confidence", data.routing.confidence.toFixed(2), "fact-confidence");
  }
}

function showUsage(usage) {
  const list = $("usage");
  list.replaceChildren();
  fact(list, "Prompt tokens", `${usage.prompt_tokens} (${usage.cached_prompt_tokens} cached)`);
  fact(list, "Completion tokens", usage.completion_tokens);
  fact(list, "Model calls", usage.model_calls);
  fact(list, "Cost", `$${usage.cost_usd.toFixed(6)}`, "fact-cost");
}

function showDone(answer) {
  state.requestId = answer.request_id;
  state.answer = answer.answer;
  state.evidence = new Map(answer.evidence.map((item) => [item.number, item]));
  renderAnswer();
  const facts = $("facts");
  fact(facts, "Answerable", answer.answerable.toFixed(2));
  fact(facts, "Answerer", answer.answerer);
  fact(facts, "Reranker", answer.reranker, "fact-reranker");
  fact(facts, "Cache", answer.cache, "fact-cache");
  $("abstention").textContent = answer.abstained ? `Abstained: ${answer.abstention_reason}` : "";
  $("abstention").hidden = !answer.abstained;
  const rows = Object.entries(answer.timings_ms).map(([stage, ms]) =>
    el("tr", {}, el("th", { textContent: stage }), el("td", { textContent: ms.toFixed(1) })),
  );
  $("timings").tBodies[0].replaceChildren(...rows);
  showUsage(answer.usage);
  $("feedback").hidden = false;
  $("result").dataset.state = "done";
}

const HANDLERS = {
  route: showRoute,
  evidence: (data) => {
    state.evidence = new Map(data.evidence.map((item) => [item.number, item]));
  },
  token: (data) => {
    state.answer += data.text;
    renderAnswer();
  },
  citation: addCitation,
  usage: showUsage,
  done: showDone,
  error: (data) => {
    showError(`${data.code}: ${data.message}`);
    $("result").dataset.state = "error";
  },
};

function resetResult() {
  Object.assign(state, { answer: "", evidence: new Map(), citations: new Map(), requestId: null });
  for (const id of ["facts", "answer", "citations", "usage", "feedback-status"]) $(id).replaceChildren();
  $("timings").tBodies[0].replaceChildren();
  $("comment").value = "";
  for (const id of ["passage", "abstention", "feedback"]) $(id).hidden = true;
  for (const id of ["helpful", "unhelpful"]) $(id).disabled = false;
  $("result").dataset.state = "streaming";
}

async function ask(event) {
  event.preventDefault();
  showError("");
  resetResult();
  const body = { question: $("question").value, domain: $("domain").value || null, stream: true };
  if ($("route").value) body.route = $("route").value;
  $("ask-button").disabled = true;
  try {
    const response = await api("v1/ask", { method: "POST", body: JSON.stringify(body) });
    state.requestId = response.headers.get("X-Request-ID");
    $("result").hidden = false;
    for await (const { name, data } of events(response)) {
      if (HANDLERS[name]) HANDLERS[name](data);
    }
  } catch (error) {
    showError(error.message);
    $("result").dataset.state = "error";
  } finally {
    $("ask-button").disabled = false;
  }
}

// --- feedback ---------------------------------------------------------------------------------------------

async function sendFeedback(helpful) {
  const status = $("feedback-status");
  const comment = $("comment").value.trim();
  const body = { request_id: state.requestId, helpful, comment: comment || null, correct_evidence: null };
  status.className = "";
  status.textContent = "Sending…";
  try {
    await api("v1/feedback", { method: "POST", body: JSON.stringify(body) });
    status.textContent = "Thanks for your feedback.";
    status.className = "ok";
    for (const id of ["helpful", "unhelpful"]) $(id).disabled = true;
  } catch (error) {
    status.textContent = error.message;
    status.className = "error";
  }
}

// --- domains and documents --------------------------------------------------------------------------------

async function loadDocuments(offset) {
  const domain = $("domain").value;
  const body = $("documents").tBodies[0];
  if (!domain) {
    body.replaceChildren();
    $("page").textContent = "no domain";
    return;
  }
  const path = `v1/domains/${encodeURIComponent(domain)}/documents?limit=${PAGE_SIZE}&offset=${offset}`;
  const page = await (await api(path)).json();
  state.offset = offset;
  body.replaceChildren(
    ...page.documents.map((doc) =>
      el(
        "tr",
        { title: doc.source },
        el("td", { textContent: doc.external_id }),
        el("td", { textContent: doc.title || "" }),
        el("td", { className: "number", textContent: String(doc.chunk_count) }),
      ),
    ),
  );
  const shown = page.documents.length;
  $("page").textContent = shown ? `${offset + 1}–${offset + shown} of ${page.total}` : `none of ${page.total}`;
  $("prev").disabled = offset === 0;
  $("next").disabled = offset + PAGE_SIZE >= page.total;
}

async function loadDomains() {
  const { domains } = await (await api("v1/domains")).json();
  const saved = localStorage.getItem(DOMAIN_STORE);
  const options = domains.map((domain) => el("option", { value: domain.name, textContent: domain.name }));
  $("domain").replaceChildren(...options);
  if (domains.some((domain) => domain.name === saved)) $("domain").value = saved;
  await loadDocuments(0);
}

function guarded(action) {
  return (...args) => {
    showError("");
    action(...args).catch((error) => showError(error.message));
  };
}

function start() {
  $("api-key").value = localStorage.getItem(KEY_STORE) || "";
  $("api-key").addEventListener(
    "change",
    guarded(async () => {
      localStorage.setItem(KEY_STORE, $("api-key").value.trim());
      await loadDomains();
    }),
  );
  $("domain").addEventListener(
    "change",
    guarded(async () => {
      localStorage.setItem(DOMAIN_STORE, $("domain").value);
      await loadDocuments(0);
    }),
  );
  $("prev").addEventListener("click", guarded(() => loadDocuments(Math.max(0, state.offset - PAGE_SIZE))));
  $("next").addEventListener("click", guarded(() => loadDocuments(state.offset + PAGE_SIZE)));
  $("ask-form").addEventListener("submit", ask);
  $("question").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      $("ask-form").requestSubmit();
    }
  });
  $("helpful").addEventListener("click", () => sendFeedback(true));
  $("unhelpful").addEventListener("click", () => sendFeedback(false));
  guarded(loadDomains)();
}

start();
