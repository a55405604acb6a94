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
// with <br /> for newlines, as Keymetrics rendered it) as DOM nodes, without any HTML parser
// (not even an inert one: Chrome still compiles, and reports, on* attributes): the text is cut
// at its tags; the formatting elements below are rebuilt bare, <br> is a newline, every other
// tag (script, img, a, ...) and every attribute is dropped, the text between stays text.
const SAFE_TAGS = new Set(['b', 'strong', 'i', 'em', 'u', 'code', 'pre', 'p', 'div', 'span', 'ul', 'ol', 'li',
  'table', 'thead', 'tbody', 'tr', 'th', 'td', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'small']);
const ENTITIES = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: '\u00a0' };

export function looksLikeHtml(text) {
  return typeof text === 'string' && /<\/?(br|hr|b|strong|i|em|u|code|pre|p|div|span|ul|ol|li|table|tr|td|th|h[1-6]|small)\b[^>]*>/i.test(text);
}

function decodeEntities(text) {
  return text.replace(/&(#x[0-9a-f]+|#[0-9]+|[a-z]+);/gi, (m, e) => {
    if (e[0] === '#') {
      const code = e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
      return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : m;
    }
    return ENTITIES[e.toLowerCase()] ?? m;
  });
}

export function safeHtml(text) {
  const out = document.createDocumentFragment();
  const open = [out]; // the elements being filled, innermost last
  const tag = /<(\/?)([a-z][a-z0-9]*)\b[^>]*>/gi;
  let at = 0;
  for (let m; (m = tag.exec(text));) {
    open[open.length - 1].append(decodeEntities(text.slice(at, m.index)));
    at = tag.lastIndex;
    const [, closing, rawName] = m;
    const name = rawName.toLowerCase();
    if (name === 'br' || name === 'hr') open[open.length - 1].append('\n');
    else if (!SAFE_TAGS.has(name)) continue;
    else if (!closing) open.push(open[open.length - 1].appendChild(document.createElement(name)));
    else {
      const i = open.findLastIndex((el) => el.localName === name);
      if (i > 0) open.length = i;
    }
  }
  open[open.length - 1].append(decodeEntities(text.slice(at)));
  return out;
}
