// WebRL observation: the page as simplified HTML, computed in one evaluation (DESIGN.md §4).
// Interactive elements get integer ids in DOM order, stored on the page as data-webrl-id so actions
// can find them. Stops at the character budget or the time budget and says it truncated.
// Also returns, in the same call, the suite's reward (opts.reward: a function's source, or null) and
// whether the page has started a navigation since the last look (see allowlist.NAVIGATION_WATCH_JS).
(opts) => {
  const t0 = performance.now();
  const W = window.innerWidth, H = window.innerHeight;
  const ATTRS = new Set(opts.attributes);
  const SKIP = new Set(["SCRIPT", "STYLE", "NOSCRIPT", "TEMPLATE", "META", "LINK", "HEAD", "BASE", "TITLE"]);
  const KEEP = new Set(["FORM", "UL", "OL", "LI", "TABLE", "TR", "TD", "TH", "LABEL", "H1", "H2", "H3",
    "H4", "H5", "H6", "P", "OPTION", "IMG", "NAV", "DIALOG", "IFRAME", "SVG"]);
  const TAGS = new Set(["A", "BUTTON", "INPUT", "SELECT", "TEXTAREA", "SUMMARY"]);
  const ROLES = new Set(["button", "link", "checkbox", "radio", "tab", "menuitem", "menuitemcheckbox",
    "menuitemradio", "option", "textbox", "combobox", "switch", "searchbox", "slider", "spinbutton", "treeitem"]);
  let nextId = 0, used = 0, truncated = false, visited = 0, reason = null, frameDepth = 0;
  const frameIds = [];

  for (const el of document.querySelectorAll("[data-webrl-id]")) el.removeAttribute("data-webrl-id");

  const escText = (s) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const esc = (s) => escText(s).replace(/"/g, "&quot;");
  const cap = (s) => {
    s = s.replace(/\s+/g, " ").trim();
    return s.length > opts.textCap ? s.slice(0, opts.textCap) + "…" : s;
  };
  const over = () => {
    if (truncated) return true;
    if (used > opts.maxChars) { truncated = true; reason = "characters"; }
    else if ((++visited & 255) === 0 && performance.now() - t0 > opts.timeBudgetMs) { truncated = true; reason = "time"; }
    return truncated;
  };
  const interactive = (el, style) => {
    const tag = el.tagName;
    if (tag === "INPUT") return el.type !== "hidden";
    if (TAGS.has(tag)) return true;
    if (el.isContentEditable && el.getAttribute("contenteditable") !== null) return true;
    const role = el.getAttribute("role");
    if (role && ROLES.has(role)) return true;
    if (el.hasAttribute("onclick") || el.hasAttribute("tabindex") && el.tabIndex >= 0) return true;
    if (style.cursor === "pointer") {
      const p = el.parentElement;
      return !p || getComputedStyle(p).cursor !== "pointer";
    }
    return false;
  };
  const attrText = (el) => {
    let out = "";
    for (const name of ATTRS) {
      let v = null;
      if (name === "value" && "value" in el && el.tagName !== "BUTTON" && el.tagName !== "LI") {
        // `checked` says all for boxes; an option's value is noise when it repeats its text
        if (el.type !== "checkbox" && el.type !== "radio" && !(el.tagName === "OPTION" && el.value === el.text.trim()))
          v = String(el.value ?? "");
      }
      else if (name === "checked" && (el.type === "checkbox" || el.type === "radio")) v = el.checked ? "true" : null;
      else if (name === "selected" && el.tagName === "OPTION") v = el.selected ? "true" : null;
      else if (el.hasAttribute(name)) v = el.getAttribute(name);
      if (v !== null && v !== "" && !(name === "value" && el.tagName === "SELECT")) out += ` ${name}="${esc(cap(v))}"`;
    }
    return out;
  };

  const walk = (node, out) => {
    if (over()) return;
    if (node.nodeType === Node.TEXT_NODE) {
      const t = cap(node.nodeValue || "");
      if (t) { const s = escText(t); out.push(s); used += s.length + 1; }
      return;
    }
    if (node.nodeType !== Node.ELEMENT_NODE) return;
    const el = node, tag = el.tagName.toUpperCase();
    if (SKIP.has(tag)) return;
    const style = getComputedStyle(el);
    if (style.display === "none" || style.visibility === "hidden") return;
    if (tag === "INPUT" && el.type === "hidden") return;
    const rect = el.getBoundingClientRect();
    if (opts.viewportOnly && rect.width * rect.height > 0 &&
        (rect.right < 0 || rect.bottom < 0 || rect.left > W || rect.top > H)) return;
    const isInteractive = interactive(el, style);
    let head = "";
    const name = tag.toLowerCase();
    if (isInteractive) {
      const id = nextId++;
      el.setAttribute("data-webrl-id", String(id));
      if (frameDepth) frameIds.push(id);
      const bbox = [rect.left, rect.top, rect.width, rect.height].map(Math.round).join(",");
      head = `<${name} id="${id}"${attrText(el)} data-bbox="${bbox}"`;
    } else if (KEEP.has(tag)) {
      head = `<${name}${attrText(el)}`;
    }
    const inner = [];
    const kids = el.shadowRoot ? [...el.shadowRoot.childNodes, ...el.childNodes] : el.childNodes;
    for (const child of kids) walk(child, inner);
    if (tag === "IFRAME") {
      try {
        if (el.contentDocument && el.contentDocument.body) {
          frameDepth++;
          try { walk(el.contentDocument.body, inner); } finally { frameDepth--; }
        }
      } catch (e) { /* cross-origin frame: its content is not ours to read */ }
    }
    if (!head) { for (const s of inner) out.push(s); return; }
    if (!isInteractive && inner.length === 0 && tag !== "IMG") return;
    const s = inner.length ? `${head}>${inner.join(" ")}</${name}>` : `${head}></${name}>`;
    used += head.length + name.length + 4;
    out.push(s);
  };

  const out = [];
  if (document.body) walk(document.body, out);
  let html = out.join(" ");
  if (html.length > opts.maxChars) { html = html.slice(0, opts.maxChars); truncated = true; reason = reason || "characters"; }
  // a navigation this document started, or a new document still being parsed: look again later
  const pendingNavigation = (window.__webrlNav || 0) + (document.readyState === "loading" ? 1 : 0);
  window.__webrlNav = 0;
  return {
    url: location.href, title: document.title, html, elementCount: nextId, truncated, reason, frameIds,
    pendingNavigation, reward: (() => { try { return opts.reward ? opts.reward() : null; } catch (e) { return null; } })(),
    ms: performance.now() - t0, visited,
  };
}
