// A modal <dialog> with a title bar and a close button, removed from the page (and its scope
// disposed: polls and streams stop) however it is closed: button, Escape or the view ending.
import { h } from './dom.js';

export function openDialog({ title, testid, closeTestid, scope }) {
  const body = h('div', { class: 'dialog-body' });
  const closeButton = h('button', { class: 'btn btn-ghost', testid: closeTestid, 'aria-label': 'Close' }, 'Close');
  const dialog = h('dialog', { class: 'dialog', testid }, h('header', { class: 'dialog-header' }, h('h2', {}, title), closeButton), body);
  const dialogScope = scope.child();
  closeButton.addEventListener('click', () => dialog.close());
  dialog.addEventListener('close', () => dialogScope.dispose());
  dialogScope.onDispose(() => {
    if (dialog.open) dialog.close();
    dialog.remove();
  });
  document.body.append(dialog);
  dialog.showModal();
  return { dialog, body, scope: dialogScope };
}
