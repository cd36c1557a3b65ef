// Client of tensorsharp's web UI protocol (DESIGN.md section 4): the HTTP calls the page makes,
// readable errors for their failures, and the reader of /api/chat's server-sent events.
"use strict";

(function () {
  // Relative URLs, so the page also works when the server sits under a path prefix.
  const PATHS = { chat: "api/chat", sessions: "api/sessions", models: "api/models", tags: "api/tags",
                  upload: "api/upload" };

  class ServerError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;   // HTTP status, when the server answered
    }
  }

  // One readable sentence for an HTTP error response, from its JSON "error" when present.
  async function responseError(res, what) {
    let detail = "";
    try {
      // An HTML error page (a proxy, a wrong port) says nothing a sentence could use.
      const body = /html/i.test(res.headers.get("Content-Type") || "") ? "" : await res.text();
      try {
        const json = JSON.parse(body);
        detail = typeof json.error === "string" ? json.error : (json.error?.message || body);
      } catch (_) {
        detail = body;
      }
    } catch (_) { /* the body is optional */ }
    detail = detail.trim().slice(0, 300);
    if (res.status === 401) detail += " — set the server's API key in Settings.";
    return new ServerError(`${what} failed: HTTP ${res.status}${detail ? ` — ${detail}` : ""}`, res.status);
  }

  function describeError(err) {
    if (err instanceof ServerError) return err.message;
    // fetch rejects with a TypeError when nothing answers at all.
    if (err instanceof TypeError) {
      return `Cannot reach the tensorsharp server at ${location.origin}. Is \`tensorsharp serve\` running?`;
    }
    return String(err?.message || err);
  }

  /** The JSON payload of each `data:` frame of a text/event-stream response, in order. */
  async function* events(res) {
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r/g, "");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = frame.split("\n").filter((l) => l.startsWith("data:"))
          .map((l) => l.slice(5).replace(/^ /, "")).join("\n");
        if (data) yield JSON.parse(data);
      }
    }
  }

  /** API calls; apiKey() gives the key for servers started with --api-key (or nothing). */
  function createClient(apiKey) {
    async function call(path, what, options = {}) {
      const headers = new Headers(options.headers);
      const key = apiKey();
      if (key) headers.set("Authorization", "Bearer " + key);
      const res = await fetch(path, { ...options, headers });
      if (!res.ok) throw await responseError(res, what);
      return res;
    }
    return {
      async models() {
        return (await call(PATHS.models, "Loading the model list")).json();
      },
      /** The names of every model the server can answer with (Ollama's /api/tags). */
      async tags() {
        return ((await (await call(PATHS.tags, "Loading the model list")).json()).models || []).map((m) => m.name);
      },
      async createSession() {
        return (await (await call(PATHS.sessions, "Creating a chat session", { method: "POST" })).json()).sessionId;
      },
      /** The streaming response of POST /api/chat; a ServerError with status 404 means the session is gone. */
      chat(body, signal) {
        return call(PATHS.chat, "The chat request", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify(body),
          signal,
        });
      },
      async upload(file, name) {
        const form = new FormData();
        form.append("file", file, name);
        try {
          return await (await call(PATHS.upload, `Uploading ${name}`, { method: "POST", body: form })).json();
        } catch (err) {
          if (err.status === 413) throw new ServerError(`${name} is larger than the server accepts.`, 413);
          throw err;
        }
      },
    };
  }

  window.tsClient = Object.freeze({ ServerError, describeError, events, createClient });
})();
