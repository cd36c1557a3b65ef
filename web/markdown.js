// Markdown for model output, built as DOM nodes: text only ever lands in text nodes, so
// whatever the model writes (HTML, scripts, handlers) shows as inert characters.
"use strict";

(function () {
  const LINK_PROTOCOLS = new Set(["http:", "https:", "mailto:"]);

  const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([^\s`]*)[^`]*$/;
  const FENCE_CLOSE = /^ {0,3}(`{3,}|~{3,})\s*$/;
  const HEADING = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/;
  const RULE = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
  const QUOTE = /^ {0,3}> ?(.*)$/;
  const ITEM = /^( *)([-*+]|\d{1,9}[.)])(?:([ \t]+)(.*))?$/;
  const TABLE_RULE = /^ *\|? *:?-+:? *(\| *:?-+:? *)*\|? *$/;

  // One alternation, tried left to right at each position; numbered groups per construct.
  const INLINE = new RegExp([
    /\\([!"#$%&'()*+,\-./:;<=>?@[\]\\^_`{|}~])/.source,                  // 1 escaped char
    /(`+)([^`]|[^`][\s\S]*?[^`])\2(?!`)/.source,                          // 2, 3 code span
    /(!?)\[([^\]\n]*)\]\(\s*<?((?:[^()\s<>]|\([^()\s]*\))*)>?(?:\s+"[^"\n]*")?\s*\)/.source, // 4, 5, 6 link
    /\*\*(?=\S)([\s\S]*?\S)\*\*/.source,                                  // 7 strong
    /(?<!\w)__(?=\S)([\s\S]*?\S)__(?!\w)/.source,                         // 8 strong
    /\*(?=[^\s*])([\s\S]*?[^\s*])\*/.source,                              // 9 emphasis
    /(?<!\w)_(?=[^\s_])([\s\S]*?[^\s_])_(?!\w)/.source,                   // 10 emphasis
    /~~(?=\S)([\s\S]*?\S)~~/.source,                                      // 11 strikethrough
    /<((?:https?:\/\/|mailto:)[^\s<>]+)>/.source,                          // 12 <autolink>
    /\b(https?:\/\/[^\s<>"'`]*[^\s<>"'`.,:;!?)\]}])/.source,              // 13 bare URL
  ].join("|"), "g");

  function node(tag, className, text) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (text !== undefined) el.textContent = text;
    return el;
  }

  // A link target is followed only if it parses to a web or mail URL; "javascript:", "data:"
  // and the like (however disguised with case or whitespace) fail the protocol check.
  function safeHref(raw) {
    try {
      const url = new URL(raw, document.baseURI);
      return LINK_PROTOCOLS.has(url.protocol) ? url.href : null;
    } catch (_) {
      return null;
    }
  }

  function link(href, parent) {
    const a = node("a");
    a.href = href;
    a.target = "_blank";
    a.rel = "noopener noreferrer nofollow";
    parent.append(a);
    return a;
  }

  function inline(text, parent) {
    let last = 0;
    for (const m of text.matchAll(INLINE)) {
      if (m.index > last) parent.append(text.slice(last, m.index));
      last = m.index + m[0].length;
      if (m[1] !== undefined) {
        parent.append(m[1]);
      } else if (m[2] !== undefined) {
        let code = m[3].replace(/\n/g, " ");
        if (/^ .*[^ ].* $/.test(code)) code = code.slice(1, -1);
        parent.append(node("code", null, code));
      } else if (m[5] !== undefined) {
        const href = safeHref(m[6]);
        if (!href) {
          parent.append(m[0]);
        } else if (m[4]) {
          // Images are shown as links: the page fetches nothing the model names.
          link(href, parent).textContent = "image: " + (m[5] || m[6]);
        } else {
          inline(m[5] || m[6], link(href, parent));
        }
      } else if (m[7] !== undefined || m[8] !== undefined) {
        inline(m[7] ?? m[8], parent.appendChild(node("strong")));
      } else if (m[9] !== undefined || m[10] !== undefined) {
        inline(m[9] ?? m[10], parent.appendChild(node("em")));
      } else if (m[11] !== undefined) {
        inline(m[11], parent.appendChild(node("del")));
      } else {
        const url = m[12] ?? m[13];
        const href = safeHref(url);
        if (href) link(href, parent).textContent = url;
        else parent.append(m[0]);
      }
    }
    if (last < text.length) parent.append(text.slice(last));
  }

  function codeBlock(source, lang, complete) {
    const box = node("div", "codeblock");
    if (!complete) box.classList.add("open");
    const head = node("div", "codeblock-head");
    head.append(node("span", "codeblock-lang", lang || "text"));
    const copy = node("button", "copy", "Copy");
    copy.type = "button";
    copy.title = "Copy code";
    head.append(copy);
    const pre = node("pre");
    pre.append(node("code", null, source));
    box.append(head, pre);
    return box;
  }

  function splitRow(line) {
    let s = line.trim();
    if (s.startsWith("|")) s = s.slice(1);
    if (s.endsWith("|") && !s.endsWith("\\|")) s = s.slice(0, -1);
    return s.split(/(?<!\\)\|/).map((cell) => cell.trim().replace(/\\\|/g, "|"));
  }

  function isTableStart(lines, i) {
    return i + 1 < lines.length && lines[i].includes("|") &&
      lines[i + 1].includes("|") && TABLE_RULE.test(lines[i + 1]);
  }

  function table(lines, i, parent) {
    const header = splitRow(lines[i]);
    const align = splitRow(lines[i + 1]).map((c) =>
      c.endsWith(":") ? (c.startsWith(":") ? "center" : "right") : (c.startsWith(":") ? "left" : ""));
    const tableEl = node("table");
    const row = (cells, tag) => {
      const tr = node("tr");
      header.forEach((_, k) => {
        const cell = node(tag);
        if (align[k]) cell.classList.add("align-" + align[k]);
        inline(cells[k] ?? "", cell);
        tr.append(cell);
      });
      return tr;
    };
    tableEl.appendChild(node("thead")).append(row(header, "th"));
    const body = tableEl.appendChild(node("tbody"));
    i += 2;
    while (i < lines.length && lines[i].trim() && lines[i].includes("|")) {
      body.append(row(splitRow(lines[i]), "td"));
      i++;
    }
    const wrap = node("div", "table-wrap");
    wrap.append(tableEl);
    parent.append(wrap);
    return i;
  }

  function startsBlock(lines, i) {
    const line = lines[i];
    return FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line) ||
      (ITEM.test(line) && ITEM.exec(line)[4] !== undefined) || isTableStart(lines, i);
  }

  function list(lines, i, parent) {
    const first = ITEM.exec(lines[i]);
    const ordered = /\d/.test(first[2]);
    const listEl = node(ordered ? "ol" : "ul");
    if (ordered && parseInt(first[2], 10) !== 1) listEl.start = parseInt(first[2], 10);
    const base = first[1].length;
    let loose = false;
    while (i < lines.length) {
      const m = ITEM.exec(lines[i]);
      if (!m || m[1].length > base + 1 || /\d/.test(m[2]) !== ordered) break;
      const indent = m[1].length + m[2].length + Math.min((m[3] || " ").length, 4);
      const body = [m[4] || ""];
      i++;
      while (i < lines.length) {
        const line = lines[i];
        const lead = line.length - line.trimStart().length;
        if (!line.trim()) {
          // A blank line keeps the item open only if indented content follows it.
          let j = i + 1;
          while (j < lines.length && !lines[j].trim()) j++;
          if (j < lines.length && lines[j].length - lines[j].trimStart().length > base + 1) {
            loose = true;
            body.push(...lines.slice(i, j).map(() => ""));
            i = j;
            continue;
          }
          break;
        }
        if (lead > base + 1) {
          body.push(line.slice(Math.min(lead, indent)));
        } else if (!startsBlock(lines, i)) {
          body.push(line.trimStart()); // lazy continuation of the item's paragraph
        } else {
          break;
        }
        i++;
      }
      const li = node("li");
      blocks(body, li);
      listEl.append(li);
      let j = i;
      while (j < lines.length && !lines[j].trim()) j++;
      if (j > i && j < lines.length && ITEM.test(lines[j]) && ITEM.exec(lines[j])[1].length <= base + 1) {
        loose = true;
        i = j;
      }
    }
    if (!loose) {
      for (const p of listEl.querySelectorAll(":scope > li > p")) p.replaceWith(...p.childNodes);
    }
    parent.append(listEl);
    return i;
  }

  function paragraph(lines, i, parent) {
    const p = node("p");
    let firstLine = true;
    while (i < lines.length && lines[i].trim() && (firstLine || !startsBlock(lines, i))) {
      // A single newline in chat text is meant as a line break, not a space.
      if (!firstLine) p.append(node("br"));
      inline(lines[i].trim(), p);
      firstLine = false;
      i++;
    }
    parent.append(p);
    return i;
  }

  function blocks(lines, parent) {
    let i = 0;
    while (i < lines.length) {
      const line = lines[i];
      let m;
      if (!line.trim()) {
        i++;
      } else if ((m = FENCE.exec(line))) {
        const body = [];
        let complete = false;
        for (i++; i < lines.length; i++) {
          const close = FENCE_CLOSE.exec(lines[i]);
          if (close && close[1][0] === m[1][0] && close[1].length >= m[1].length) {
            complete = true;
            i++;
            break;
          }
          body.push(lines[i]);
        }
        parent.append(codeBlock(body.join("\n"), m[2], complete));
      } else if ((m = HEADING.exec(line))) {
        const h = node("h" + m[1].length);
        inline(m[2] || "", h);
        parent.append(h);
        i++;
      } else if (RULE.test(line)) {
        parent.append(node("hr"));
        i++;
      } else if (QUOTE.test(line)) {
        const body = [];
        while (i < lines.length && lines[i].trim() && (QUOTE.test(lines[i]) || !startsBlock(lines, i))) {
          const q = QUOTE.exec(lines[i]);
          body.push(q ? q[1] : lines[i]);
          i++;
        }
        blocks(body, parent.appendChild(node("blockquote")));
      } else if (ITEM.test(line) && ITEM.exec(line)[4] !== undefined) {
        i = list(lines, i, parent);
      } else if (isTableStart(lines, i)) {
        i = table(lines, i, parent);
      } else {
        i = paragraph(lines, i, parent);
      }
    }
  }

  /** Render Markdown `text` into a new DocumentFragment (no listeners, no network). */
  function render(text) {
    const fragment = document.createDocumentFragment();
    const lines = String(text).replace(/\r\n?/g, "\n").replace(/\t/g, "    ").split("\n");
    blocks(lines, fragment);
    return fragment;
  }

  window.tsMarkdown = Object.freeze({ render });
})();
