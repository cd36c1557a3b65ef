// The chat page's behaviour: conversation state, its views and the controls. It reaches the
// server only through client.js and builds every node itself; model text reaches the page
// through markdown.js or textContent, never as HTML.
"use strict";

const { ServerError, describeError, events } = window.tsClient;
const SETTINGS_KEY = "tensorsharp.settings";   // localStorage: shared by tabs, kept across visits
const SESSION_KEY = "tensorsharp.session";     // sessionStorage: one server session per tab
const TRANSCRIPT_KEY = "tensorsharp.transcript";
const SYNCED_KEY = "tensorsharp.synced";
const MODEL_KEY = "tensorsharp.model";         // localStorage: the model picked, kept across visits
const RECONNECT_MS = 3000;                      // between checks while the server cannot be reached
const SETTING_FIELDS = {
  temperature: "float", topP: "float", topK: "int", maxTokens: "int", systemPrompt: "text", think: "bool",
  apiKey: "text",
};

const $ = (id) => document.getElementById(id);

const state = {
  model: null,                                      // the chosen model's /api/models entry
  picked: localStorage.getItem(MODEL_KEY),          // the name picked; null: the server's default
  sessionId: sessionStorage.getItem(SESSION_KEY),
  turns: loadJSON(sessionStorage, TRANSCRIPT_KEY, []),
  // True while the server's copy of the session history is known to equal `turns`, i.e. the last
  // reply streamed to its end. Otherwise the next request says newChat so the server drops its
  // copy and takes the page's transcript as the whole conversation.
  synced: sessionStorage.getItem(SYNCED_KEY) === "1",
  settings: loadJSON(localStorage, SETTINGS_KEY, {}),
  controller: null,                                 // AbortController of the request in flight
  pending: [],                                      // attachments for the next message
  thumbs: new Map(),                                // upload id -> blob: URL (this page load only)
  reconnect: 0,                                     // timer of the next check while disconnected
};
const client = window.tsClient.createClient(() => state.settings.apiKey);

// ---------- small helpers ----------

function loadJSON(storage, key, fallback) {
  try {
    const value = JSON.parse(storage.getItem(key));
    return value ?? fallback;
  } catch (_) {
    return fallback;
  }
}

function h(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

function button(label, className, onClick, title) {
  const b = h("button", className, label);
  b.type = "button";
  if (title) b.title = title;
  b.addEventListener("click", onClick);
  return b;
}

function saveTranscript() {
  try {
    sessionStorage.setItem(SYNCED_KEY, state.synced ? "1" : "0");
    sessionStorage.setItem(TRANSCRIPT_KEY, JSON.stringify(state.turns));
  } catch (_) { /* storage full: the conversation still works until reload */ }
}

function setSession(id) {
  state.sessionId = id;
  if (id) sessionStorage.setItem(SESSION_KEY, id);
  else sessionStorage.removeItem(SESSION_KEY);
}

// ---------- banner and model info ----------

function showBanner(text, retry) {
  $("banner-text").textContent = text;
  $("banner-retry").hidden = !retry;
  $("banner").hidden = false;
}

function hideBanner() {
  $("banner").hidden = true;
}

function setConnected(ok) {
  const dot = $("status-dot");
  dot.className = "status-dot " + (ok ? "ok" : "down");
  dot.title = ok ? "Connected" : "Disconnected";
  dot.setAttribute("aria-label", dot.title);
}

// fetch itself failed: nothing answered (an HTTP error means the server is there).
function unreachable(err) {
  return err instanceof TypeError;
}

// Any request that finds the server gone turns the dot red beside the banner, and the page keeps
// checking on its own, so both clear when the server is back without the reader doing anything.
function serverDown(err) {
  setConnected(false);
  showBanner(describeError(err), true);
  clearTimeout(state.reconnect);
  state.reconnect = setTimeout(loadModel, RECONNECT_MS);
}

// Ollama's default tag says nothing to a reader: `smollm2-135m:latest` is shown as `smollm2-135m`.
function displayName(name) {
  return name.replace(/:latest$/, "");
}

async function loadModel() {
  clearTimeout(state.reconnect);
  try {
    const [data, names] = await Promise.all([client.models(), client.tags()]);
    const models = data.models || [];
    if (!names.includes(state.picked)) state.picked = null;   // deleted meanwhile: back to the default
    const chosen = state.picked || data.loaded;
    state.model = models.find((m) => m.name === chosen) || models[0] || null;
    if (!state.model) throw new ServerError("The server reports no model.");
    showPicker(names, state.model.name);
    showModel(state.model);
    setConnected(true);
    hideBanner();
  } catch (err) {
    $("model-label").textContent = "not connected";
    $("model-ctx").textContent = "";
    if (unreachable(err)) {
      serverDown(err);
    } else {
      setConnected(false);
      showBanner(describeError(err), true);
    }
  }
}

// One model: its name as a label. Several: a picker whose choice goes with every request.
function showPicker(names, current) {
  const select = $("model-select");
  select.replaceChildren(...names.map((name) => {
    const option = h("option", "", displayName(name));
    option.value = name;
    return option;
  }));
  select.value = current;
  select.hidden = names.length < 2;
  $("model-label").hidden = !select.hidden;
}

function showModel(m) {
  $("model-label").textContent = m.name;
  $("model-ctx").textContent = `${Number(m.contextLength).toLocaleString("en-US")} ctx`;
  $("model-label").title = $("model-select").title =
    [m.file, m.architecture, m.parameters, m.quantization].filter(Boolean).join(" · ");
  $("empty-model").textContent = displayName(m.name);
  $("attach").hidden = !m.supportsImages;
  $("think-note").hidden = !!m.supportsThinking;
  $("set-think").disabled = !m.supportsThinking;
  $("set-maxTokens").max = m.contextLength || "";
}

async function pickModel(name) {
  state.picked = name;
  localStorage.setItem(MODEL_KEY, name);
  await loadModel();
}

// ---------- settings drawer ----------

function fillSettings() {
  for (const [key, kind] of Object.entries(SETTING_FIELDS)) {
    const input = $("set-" + key);
    const value = state.settings[key];
    if (kind === "bool") input.checked = !!value;
    else input.value = value ?? "";
  }
}

function readSetting(key, kind) {
  const input = $("set-" + key);
  if (kind === "bool") return input.checked;
  if (kind === "text") return input.value.trim() ? input.value : undefined;
  if (input.value.trim() === "" || !input.checkValidity()) return undefined;
  const n = kind === "int" ? parseInt(input.value, 10) : parseFloat(input.value);
  return Number.isFinite(n) ? n : undefined;
}

function saveSettings() {
  const settings = {};
  for (const [key, kind] of Object.entries(SETTING_FIELDS)) {
    const value = readSetting(key, kind);
    if (value !== undefined) settings[key] = value;
  }
  state.settings = settings;
  localStorage.setItem(SETTINGS_KEY, JSON.stringify(settings));
}

function openSettings(open) {
  const drawer = $("settings");
  drawer.classList.toggle("open", open);
  drawer.inert = !open;
  drawer.setAttribute("aria-hidden", String(!open));
  $("scrim").hidden = !open;
  $("open-settings").setAttribute("aria-expanded", String(open));
  if (open) $("set-systemPrompt").focus();
  else $("input").focus();
}

// ---------- transcript rendering ----------

function isNearBottom() {
  const log = $("log");
  return log.scrollHeight - log.scrollTop - log.clientHeight < 120;
}

function scrollToBottom() {
  $("log").scrollTop = $("log").scrollHeight;
}

// Runs change() and, if the reader was at the end of the log, brings the end back into view: the
// last paint of an answer grows the log after the streaming paints (its stats line, wrapped on a
// phone; the Edit button that returns to the question above it), leaving the end under the composer.
function keepingEnd(change) {
  const follow = isNearBottom();
  change();
  if (follow) scrollToBottom();
}

function imageChip(image) {
  const url = state.thumbs.get(image.id);
  if (url) {
    const img = h("img", "thumb");
    img.src = url;
    img.alt = image.name || "image";
    return img;
  }
  return h("span", "file-chip", "🖼 " + (image.name || "image"));
}

function userView(turn, index) {
  const article = h("article", "turn user");
  article.dataset.index = index;
  const bubble = article.appendChild(h("div", "bubble"));
  if (turn.images?.length) {
    const row = bubble.appendChild(h("div", "turn-images"));
    turn.images.forEach((image) => row.append(imageChip(image)));
  }
  bubble.append(h("div", "text", turn.content));
  if (turn.rejected) markRejected(article);
  const actions = article.appendChild(h("div", "turn-actions"));
  actions.append(button("Edit", "ghost small edit", () => startEdit(index), "Edit and resend this message"));
  return article;
}

// A message the server refused or never received stays visible but leaves the conversation sent
// from then on, so one oversized or failed message does not make every later one fail too.
function markRejected(view) {
  view.classList.add("rejected");
  view.querySelector(".bubble").after(h("div", "turn-note", "Not sent — edit it to try again"));
}

function assistantView() {
  const article = h("article", "turn assistant");
  const queue = article.appendChild(h("div", "queue"));
  queue.hidden = true;
  const thinking = article.appendChild(h("details", "thinking"));
  thinking.hidden = true;
  thinking.append(h("summary", null, "Thinking"), h("div", "thinking-text"));
  const answer = article.appendChild(h("div", "answer markdown"));
  const tools = article.appendChild(h("div", "tool-calls"));
  const error = article.appendChild(h("div", "turn-error"));
  error.hidden = true;
  const footer = article.appendChild(h("div", "turn-foot"));
  const stats = footer.appendChild(h("div", "stats"));
  const copy = button("Copy", "ghost small copy-answer", () => copyText(article.turn?.content || "", copy), "Copy the answer as Markdown");
  footer.append(copy);
  article.parts = { queue, thinking, answer, tools, error, stats };
  return article;
}

function toolCard(call) {
  const card = h("div", "tool-card");
  const head = card.appendChild(h("div", "tool-head"));
  head.append(h("span", "tool-label", "tool call"), h("span", "tool-name", call.function?.name || "?"));
  let args = call.function?.arguments ?? "";
  try {
    args = JSON.stringify(typeof args === "string" ? JSON.parse(args) : args, null, 2);
  } catch (_) { /* not JSON: show it as sent */ }
  card.append(h("pre", "tool-args", String(args)));
  return card;
}

function statsText(s) {
  const parts = [
    `${s.tokenCount} tokens`,
    `${Number(s.elapsed).toFixed(2)} s`,
    `${Number(s.tokPerSec).toFixed(1)} tok/s`,
    // Only when something was reused (not on a fresh chat's first message): "KV reused 0/31" reads as a fault.
    s.kvReusedTokens > 0
      ? `KV reused ${s.kvReusedTokens}/${s.promptTokens} prompt tokens (${Math.round(s.kvReusePercent)}%)`
      : `${s.promptTokens} prompt tokens`,
  ];
  if (s.finishReason === "length") parts.push("hit the token limit");
  if (s.finishReason === "cancelled") parts.push("cancelled");
  return parts.join(" · ");
}

// Brings an assistant view up to date with its turn; cheap enough to run once per frame.
function paintAssistant(article, turn, streaming) {
  const p = article.parts;
  article.turn = turn;
  article.classList.toggle("streaming", streaming);
  p.answer.replaceChildren(window.tsMarkdown.render(turn.content));
  if (turn.thinking) {
    p.thinking.hidden = false;
    p.thinking.lastChild.textContent = turn.thinking;
    const thinkingNow = streaming && !turn.content;
    p.thinking.firstChild.textContent = thinkingNow ? "Thinking…" : "Thoughts";
    // Open while the model is thinking, folded once the answer starts, unless the reader chose.
    if (!p.thinking.dataset.touched) p.thinking.open = thinkingNow;
  }
  if (p.tools.childElementCount !== (turn.toolCalls?.length || 0)) {
    p.tools.replaceChildren(...(turn.toolCalls || []).map(toolCard));
  }
  p.error.hidden = !turn.error;
  p.error.textContent = turn.error || "";
  if (turn.stats) p.stats.textContent = statsText(turn.stats);
  else p.stats.textContent = turn.stopped ? "Stopped" : "";
}

function renderTranscript() {
  const views = state.turns.map((turn, index) => {
    if (turn.role === "user") return userView(turn, index);
    const view = assistantView();
    paintAssistant(view, turn, false);
    return view;
  });
  $("messages").replaceChildren(...views);
  updateChrome();
  scrollToBottom();
}

// Shows what fits the current state: Send or Stop, the empty-state hint, one Edit button.
function updateChrome() {
  const busy = !!state.controller;
  $("send").hidden = busy;
  $("stop").hidden = !busy;
  $("send").disabled = state.pending.some((a) => !a.id);
  $("empty").hidden = state.turns.length > 0;
  $("new-chat").disabled = busy;
  const users = $("messages").querySelectorAll(".turn.user");
  users.forEach((view, k) => view.classList.toggle("editable", !busy && k === users.length - 1));
}

// ---------- talking to the server ----------

async function createSession() {
  setSession(await client.createSession());
}

function requestBody(history, newChat) {
  const s = state.settings;
  const body = {
    messages: history.map((t) => {
      const message = { role: t.role, content: t.content };
      if (t.images?.length) message.images = t.images.map((i) => i.id);
      return message;
    }),
    sessionId: state.sessionId,
    newChat,
    think: !!s.think && state.model?.supportsThinking !== false,
    tools: [],
  };
  if (state.picked) body.model = state.picked;
  for (const key of ["temperature", "topP", "topK", "maxTokens", "systemPrompt"]) {
    if (s[key] !== undefined) body[key] = s[key];
  }
  return body;
}

async function postChat(history, newChat, signal) {
  if (!state.sessionId) await createSession();
  try {
    return await client.chat(requestBody(history, newChat), signal);
  } catch (err) {
    if (err.status !== 404) throw err;
    // The server forgot this tab's session (restart, eviction): make a new one and go again.
    await createSession();
    return client.chat(requestBody(history, newChat), signal);
  }
}

function applyEvent(turn, ev) {
  if (ev.sessionId) setSession(ev.sessionId);
  if (ev.queuePosition !== undefined) turn.queuePosition = ev.queuePosition;
  else if (!ev.sessionId) turn.queuePosition = undefined;
  if (ev.token) turn.content += ev.token;
  if (ev.thinking) turn.thinking += ev.thinking;
  if (ev.tool_calls) turn.toolCalls.push(...ev.tool_calls);
  if (ev.error) turn.error = ev.error;
  if (ev.done) {
    const { done, ...stats } = ev;
    turn.stats = stats;
  }
}

async function generate() {
  const history = state.turns.filter((t) => !t.rejected && (t.role === "user" || t.content));
  const asked = history[history.length - 1];
  const turn = { role: "assistant", content: "", thinking: "", toolCalls: [] };
  state.turns.push(turn);
  const view = assistantView();
  $("messages").append(view);
  paintAssistant(view, turn, true);
  scrollToBottom();
  const controller = new AbortController();
  state.controller = controller;
  const newChat = !state.synced;
  state.synced = false;
  saveTranscript();   // a reload mid-answer must not trust the server's copy either
  updateChrome();

  let frame = 0;
  const repaint = () => keepingEnd(() => {
    frame = 0;
    paintAssistant(view, turn, true);
    const q = view.parts.queue;
    q.hidden = turn.queuePosition === undefined;
    q.textContent = q.hidden ? "" : `Waiting in queue: position ${turn.queuePosition}`;
  });
  let accepted = false;
  try {
    const res = await postChat(history, newChat, controller.signal);
    accepted = true;
    // Answered while the page thought the server gone: take its model info again (dot, banner).
    if ($("status-dot").classList.contains("down")) loadModel();
    else hideBanner();
    for await (const ev of events(res)) {
      applyEvent(turn, ev);
      if (!frame) frame = requestAnimationFrame(repaint);
    }
    if (!turn.stats && !turn.error) turn.error = "The server closed the stream before the answer was finished.";
    state.synced = !!turn.stats && !turn.error;
  } catch (err) {
    if (err.name === "AbortError") {
      turn.stopped = true;
    } else {
      turn.error = describeError(err);
      if (unreachable(err)) serverDown(err);
      if (!accepted && asked?.role === "user") {
        asked.rejected = true;
        const index = state.turns.indexOf(asked);
        markRejected($("messages").querySelector(`.turn.user[data-index="${index}"]`));
      }
    }
  } finally {
    if (frame) cancelAnimationFrame(frame);
    turn.queuePosition = undefined;
    view.parts.queue.hidden = true;
    state.controller = null;
    keepingEnd(() => {
      paintAssistant(view, turn, false);
      updateChrome();
    });
    saveTranscript();
  }
}

function stop() {
  state.controller?.abort();
}

// ---------- composing, editing, attachments ----------

function autosize(textarea) {
  textarea.style.height = "auto";
  textarea.style.height = Math.min(textarea.scrollHeight, 220) + "px";
}

function submit() {
  const input = $("input");
  const text = input.value.trim();
  if (state.controller || $("send").disabled || (!text && !state.pending.length)) return;
  const turn = { role: "user", content: text };
  if (state.pending.length) turn.images = state.pending.map((a) => ({ id: a.id, name: a.name }));
  state.pending = [];
  renderAttachments();
  input.value = "";
  autosize(input);
  state.turns.push(turn);
  $("messages").append(userView(turn, state.turns.length - 1));
  saveTranscript();
  generate();
}

function startEdit(index) {
  const turn = state.turns[index];
  const view = $("messages").querySelector(`.turn.user[data-index="${index}"]`);
  if (state.controller || !turn || !view) return;
  view.classList.add("editing");
  const bubble = view.querySelector(".bubble");
  const original = [...bubble.childNodes];
  const box = h("textarea", "edit-box");
  box.value = turn.content;
  const cancel = () => {
    view.classList.remove("editing");
    bubble.replaceChildren(...original);
  };
  const resend = () => {
    const text = box.value.trim();
    if (!text || state.controller) return;
    state.turns = state.turns.slice(0, index);
    const { rejected, ...kept } = turn;
    state.turns.push({ ...kept, content: text });
    state.synced = false;
    saveTranscript();
    renderTranscript();
    generate();
  };
  box.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); resend(); }
    if (e.key === "Escape") { e.preventDefault(); cancel(); }
  });
  box.addEventListener("input", () => autosize(box));
  const actions = h("div", "edit-actions");
  actions.append(button("Cancel", "ghost small", cancel), button("Send", "primary small", resend));
  bubble.replaceChildren(box, actions);
  autosize(box);
  box.focus();
}

function newChat() {
  if (state.controller) return;
  state.turns = [];
  state.synced = false;
  saveTranscript();
  renderTranscript();
  $("input").focus();
}

function renderAttachments() {
  const row = $("attachments");
  row.hidden = state.pending.length === 0;
  row.replaceChildren(...state.pending.map((a) => {
    const chip = h("div", "attachment" + (a.id ? "" : " uploading"));
    const img = chip.appendChild(h("img"));
    img.src = a.url;
    img.alt = a.name;
    chip.title = a.id ? a.name : `${a.name} (uploading…)`;
    chip.append(button("✕", "remove", () => {
      state.pending = state.pending.filter((x) => x !== a);
      renderAttachments();
    }, "Remove"));
    return chip;
  }));
  updateChrome();
}

async function attach(files) {
  if (!state.model?.supportsImages) return;
  for (const file of files) {
    if (!file.type.startsWith("image/")) continue;
    const item = { name: file.name || "image", url: URL.createObjectURL(file), id: null };
    state.pending.push(item);
    renderAttachments();
    try {
      item.id = (await client.upload(file, item.name)).id;
      state.thumbs.set(item.id, item.url);
    } catch (err) {
      state.pending = state.pending.filter((x) => x !== item);
      if (unreachable(err)) serverDown(err);
      else showBanner(describeError(err), false);
    }
    renderAttachments();
  }
}

async function copyText(text, feedback) {
  try {
    await navigator.clipboard.writeText(text);
    feedback.textContent = "Copied";
  } catch (_) {
    feedback.textContent = "Copy failed";
  }
  setTimeout(() => { feedback.textContent = "Copy"; }, 1500);
}

// ---------- wiring ----------

function wire() {
  const input = $("input");
  $("composer").addEventListener("submit", (e) => { e.preventDefault(); submit(); });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      submit();
    }
  });
  input.addEventListener("input", () => autosize(input));
  $("stop").addEventListener("click", stop);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape") {
      if ($("settings").classList.contains("open")) openSettings(false);
      else stop();
    }
  });
  $("new-chat").addEventListener("click", newChat);
  $("model-select").addEventListener("change", (e) => pickModel(e.target.value));
  $("open-settings").addEventListener("click", () => openSettings(true));
  $("close-settings").addEventListener("click", () => openSettings(false));
  $("scrim").addEventListener("click", () => openSettings(false));
  $("settings").addEventListener("input", saveSettings);
  $("reset-settings").addEventListener("click", () => {
    state.settings = {};
    fillSettings();
    saveSettings();
  });
  $("banner-retry").addEventListener("click", loadModel);
  $("set-apiKey").addEventListener("change", loadModel);
  $("banner-close").addEventListener("click", hideBanner);
  $("attach").addEventListener("click", () => $("file-input").click());
  $("file-input").addEventListener("change", (e) => {
    attach([...e.target.files]);
    e.target.value = "";
  });
  input.addEventListener("paste", (e) => {
    const files = [...(e.clipboardData?.files || [])];
    if (files.length && state.model?.supportsImages) {
      e.preventDefault();
      attach(files);
    }
  });
  $("composer").addEventListener("dragover", (e) => {
    if (state.model?.supportsImages) e.preventDefault();
  });
  $("composer").addEventListener("drop", (e) => {
    if (!state.model?.supportsImages) return;
    e.preventDefault();
    attach([...e.dataTransfer.files]);
  });
  // Copy buttons live inside rendered Markdown, which carries no listeners of its own.
  $("messages").addEventListener("click", (e) => {
    const copy = e.target.closest(".codeblock .copy");
    if (copy) copyText(copy.closest(".codeblock").querySelector("code").textContent, copy);
    // Once the reader opens or folds the thoughts, streaming stops doing it for them.
    const summary = e.target.closest("details.thinking > summary");
    if (summary) summary.parentElement.dataset.touched = "1";
  });
}

wire();
fillSettings();
renderTranscript();
loadModel();
$("input").focus();
