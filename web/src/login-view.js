// Login: paste an API token (viewer or operator). It is checked with one cheap read and kept
// in sessionStorage (gone when the tab closes).

import { call, setToken, clearToken, ApiError } from './api.js';
import { h } from './dom.js';

export function loginView(root, { message, onLoggedIn }) {
  const input = h('input', { class: 'input', type: 'password', testid: 'token-input', placeholder: 'API token', autocomplete: 'off', spellcheck: false, autofocus: true });
  const error = h('div', { class: 'status-line bad', testid: 'login-error', role: 'alert', hidden: !message }, message || '');
  const button = h('button', { class: 'btn btn-primary', type: 'submit', testid: 'login-button' }, 'Sign in');
  const form = h('form', { class: 'card login-card' },
    h('h1', {}, 'Herd'),
    h('p', { class: 'muted' }, 'Paste an API token: the viewer token reads, the operator token also changes configuration, restarts and runs actions. The control plane wrote both in its data directory (viewer-token, operator-token).'),
    input, button, error);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const token = input.value.trim();
    if (!token) return;
    button.disabled = true;
    error.hidden = true;
    setToken(token);
    try {
      await call('ListHosts', { pageSize: 1 });
      onLoggedIn();
    } catch (err) {
      clearToken();
      error.textContent = err instanceof ApiError && err.unauthenticated
        ? 'This token was not accepted (401): check it and try again.'
        : `Could not sign in: ${err instanceof ApiError ? err.describe() : err.message}`;
      error.hidden = false;
      button.disabled = false;
    }
  });
  root.replaceChildren(h('div', { class: 'login-page' }, form));
  input.focus();
}
