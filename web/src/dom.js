// Building DOM without innerHTML: everything the server sends (hostnames, labels, probe
// values, module text) is untrusted and only ever becomes text nodes or checked attributes.

// h('div', {class: 'x', testid: 'y', onclick: fn, dataset: {k: v}}, child, ...)
// Children are nodes, strings (text) or arrays of them; null/undefined/false are skipped.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'testid') el.dataset.testid = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key in el && typeof value !== 'string') el[key] = value;
    else el.setAttribute(key, value === true ? '' : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

// Replaces el's text only when it changed (cheap on every metrics tick).
export function setText(el, text) {
  const s = String(text);
  if (el.textContent !== s) el.textContent = s;
}

// A "key=value" label as a chip.
export function labelChips(labels) {
  return Object.entries(labels || {})
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => h('span', { class: 'chip' }, `${k}=${v}`));
}

// A CSS colour from module data, or null: only what the browser parses as a colour is used.
export function safeColor(value) {
  if (typeof value !== 'string' || value.length > 64) return null;
  const v = value.trim();
  return v && CSS.supports('color', v) && !/url\(|var\(/i.test(v) ? v : null;
}

// An image URL from module data, or null: https: or an inline data:image/ only (PM2's widget
// logo "must be https"), never javascript:, http: or a relative path.
export function safeImageUrl(value) {
  if (typeof value !== 'string') return null;
  const v = value.trim();
  if (/^data:image\/(png|gif|jpeg|webp|svg\+xml)[;,]/i.test(v)) return v;
  try {
    return new URL(v).protocol === 'https:' ? v : null;
  } catch {
    return null;
  }
}

// Text that holds HTML (a PM2 module's action reply: pm2-server-monit answers `ps` output
// with <br /> for newlines, as Keymetrics rendered it) as DOM nodes: formatting elements are
// rebuilt without any attribute, <br> becomes a newline, everything else (scripts, images,
// links, handlers) is reduced to its text. Never innerHTML into the page.
const SAFE_TAGS = new Set(['b', 'strong', 'i', 'em', 'u', 'code', 'pre', 'p', 'div', 'span', 'ul', 'ol', 'li',
  'table', 'thead', 'tbody', 'tr', 'th', 'td', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'hr', 'small']);
const DROPPED_TAGS = new Set(['script', 'style', 'template', 'noscript', 'iframe', 'object', 'head', 'title']);

export function looksLikeHtml(text) {
  return typeof text === 'string' && /<\/?(br|b|strong|i|em|u|code|pre|p|div|span|ul|ol|li|table|tr|td|th|h[1-6]|hr|small)\b[^>]*>/i.test(text);
}

export function safeHtml(text) {
  const doc = new DOMParser().parseFromString(`<body>${text}</body>`, 'text/html');
  const out = document.createDocumentFragment();
  const copy = (from, to) => {
    for (const node of from.childNodes) {
      if (node.nodeType === Node.TEXT_NODE) to.append(node.textContent);
      else if (node.nodeType !== Node.ELEMENT_NODE) continue;
      else {
        const tag = node.tagName.toLowerCase();
        if (tag === 'br') to.append('\n');
        else if (DROPPED_TAGS.has(tag)) continue;
        else if (SAFE_TAGS.has(tag)) copy(node, to.appendChild(document.createElement(tag)));
        else copy(node, to);
      }
    }
  };
  copy(doc.body, out);
  return out;
}
