// The dashboard shell: login gate, top bar and hash routing
//   #/hosts            the fleet
//   #/hosts/<id>       one host and its modules
//   #/rollouts         recent rollouts
//   #/modules[/<name>] every module across the fleet, deployments, deploy dialog
//   #/logs[/<host>/<unit>]  a unit's live log
//   #/audit[?actor=&action=]  the audit log, filtered
// Each view runs in a Scope that is disposed when the route changes, which stops its
// timers, streams and dialogs.

import { call, getToken, clearToken, onUnauthorized } from './api.js';
import { Scope } from './scope.js';
import { loginView } from './login-view.js';
import { fleetView } from './fleet-view.js';
import { hostView } from './host-view.js';
import { rolloutsView } from './rollouts-view.js';
import { modulesView } from './modules-view.js';
import { logsView } from './logs-view.js';
import { auditView } from './audit-view.js';

const main = document.getElementById('view');
const topbar = document.getElementById('topbar');
const whoami = document.querySelector('[data-testid="whoami"]');
let whoamiToken = '';
const navLinks = {
  hosts: document.querySelector('[data-testid="nav-hosts"]'),
  rollouts: document.querySelector('[data-testid="nav-rollouts"]'),
  modules: document.querySelector('[data-testid="nav-modules"]'),
  logs: document.querySelector('[data-testid="nav-logs"]'),
  audit: document.querySelector('[data-testid="nav-audit"]'),
};

let current = new Scope();
let onLogin = false;

function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function route() {
  current.dispose();
  current = new Scope();
  if (!getToken()) {
    showLogin('');
    return;
  }
  onLogin = false;
  topbar.hidden = false;
  showWhoAmI();
  const [route_, queryText = ''] = location.hash.replace(/^#\/?/, '').split('?');
  const path = route_.split('/').map(decodeURIComponent);
  const query = Object.fromEntries(new URLSearchParams(queryText));
  const ctx = { scope: current, navigate };
  document.title = 'Herd';
  if (path[0] === 'hosts' && path[1]) {
    setActive('hosts');
    hostView(main, { ...ctx, hostId: path[1] });
  } else if (path[0] === 'modules') {
    setActive('modules');
    modulesView(main, { ...ctx, module: path[1] || '' });
  } else if (path[0] === 'logs') {
    setActive('logs');
    logsView(main, { ...ctx, hostId: path[1] || '', unit: path[2] || '' });
  } else if (path[0] === 'audit') {
    setActive('audit');
    auditView(main, { ...ctx, query });
  } else if (path[0] === 'rollouts') {
    setActive('rollouts');
    rolloutsView(main, ctx);
  } else if (path[0] === 'hosts') {
    setActive('hosts');
    fleetView(main, ctx);
  } else {
    navigate('#/hosts');
  }
}

function showLogin(message) {
  current.dispose();
  current = new Scope();
  onLogin = true;
  topbar.hidden = true;
  document.title = 'Sign in · Herd';
  loginView(main, { message, onLoggedIn: route });
}

// The signed-in token's name and role, once per token; a viewer sees that changes will be
// refused before trying one.
async function showWhoAmI() {
  const token = getToken();
  if (token === whoamiToken) return;
  whoamiToken = token;
  whoami.hidden = true;
  try {
    const me = await call('WhoAmI', {});
    if (getToken() !== token) return;
    whoami.textContent = me.role === 'operator' ? `${me.name} · operator` : `${me.name} · viewer (read-only)`;
    whoami.dataset.role = me.role;
    whoami.hidden = false;
  } catch {
    whoamiToken = '';  // try again on the next route
  }
}

function setActive(name) {
  for (const [key, link] of Object.entries(navLinks)) link.classList.toggle('active', key === name);
}

// A rejected token anywhere (revoked, control plane data reset) ends the session; the page
// the operator was on is kept in the hash and shown again after signing in.
onUnauthorized(() => {
  if (onLogin) return;
  clearToken();
  whoamiToken = '';
  showLogin('Your token was rejected (401): it may have been revoked. Sign in again.');
});

document.querySelector('[data-testid="logout"]').addEventListener('click', () => {
  clearToken();
  whoamiToken = '';
  showLogin('');
});

window.addEventListener('hashchange', route);
route();
