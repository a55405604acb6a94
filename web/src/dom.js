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
