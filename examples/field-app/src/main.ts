/**
 * The Fieldsync field app: an offline-first web app on `@fieldsync/client` and its
 * `IndexedDbStore`. Sign in once online; from then on it opens and works offline (the service
 * worker keeps the shell, IndexedDB the data and the outbox) and catches up when the network
 * is back. Every view is a live query (`client.watch`): a local edit, a pull or another
 * device's change re-renders what it changes, and nothing else.
 */
import { createClient, IndexedDbStore, type FieldsyncClient, type SyncState } from '@fieldsync/client';
import { $, ago, replace } from './dom.js';
import { accessToken, currentSession, deviceIdFor, login, LoginError, logout, type SessionUser } from './session.js';
import { chatView, contactsView, listsView, type View, type ViewContext } from './views.js';

const VIEWS: Record<string, (ctx: ViewContext) => View> = { contacts: contactsView, lists: listsView, chat: chatView };

function registerServiceWorker(): void {
  if (!('serviceWorker' in navigator)) return;
  navigator.serviceWorker.register('./sw.js', { scope: './' }).catch((error) => console.warn('service worker not registered', error));
}

function showLogin(): void {
  $('#status-bar').hidden = true;
  $('#app-view').hidden = true;
  $('#login-view').hidden = false;
  const form = $('#login-form') as HTMLFormElement;
  const error = $('#login-error');
  ($('#login') as HTMLInputElement).focus();
  form.onsubmit = async (event) => {
    event.preventDefault();
    error.textContent = '';
    const button = form.querySelector('button')!;
    button.disabled = true;
    try {
      const session = await login(($('#login') as HTMLInputElement).value.trim(), ($('#password') as HTMLInputElement).value);
      ($('#password') as HTMLInputElement).value = '';
      await startApp(session.user);
    } catch (e) {
      error.textContent = e instanceof LoginError ? e.message : 'Sign-in failed';
    } finally {
      button.disabled = false;
    }
  };
}

function renderStatus(state: SyncState): void {
  const net = $('#net');
  net.textContent = state.online ? 'online' : 'offline';
  net.className = `net ${state.online ? 'online' : 'offline'}`;
  $('#pending').textContent = state.pending === 0 ? 'No changes waiting' : `${state.pending} change${state.pending === 1 ? '' : 's'} waiting`;
  const progress = state.syncing && state.progress && !state.progress.done ? ` (syncing ${state.progress.received} of ~${state.progress.total})` : state.syncing ? ' (syncing)' : '';
  $('#synced').textContent = `Last synced: ${ago(state.lastSyncedAt)}${progress}`;
  $('#synced').dataset.at = state.lastSyncedAt ?? '';
}

let notices: ReturnType<typeof setTimeout> | undefined;
function notify(message: string): void {
  const notice = $('#notice');
  notice.textContent = message;
  notice.hidden = false;
  clearTimeout(notices);
  notices = setTimeout(() => (notice.hidden = true), 8000);
}

async function startApp(user: SessionUser): Promise<void> {
  const deviceId = deviceIdFor(user.id);
  const client: FieldsyncClient = await createClient({
    url: location.origin,
    token: accessToken,
    deviceId,
    store: new IndexedDbStore(`fieldsync-${deviceId}`),
    deviceInfo: { platform: 'web', appVersion: '0.1.0', osVersion: navigator.userAgent.slice(0, 64) },
    backoff: { baseMs: 500, maxMs: 10_000 },
  });
  (window as unknown as { fieldsync: FieldsyncClient }).fieldsync = client; // for the console and the browser tests

  $('#login-view').hidden = true;
  $('#status-bar').hidden = false;
  $('#app-view').hidden = false;
  $('#who').textContent = user.name;
  renderStatus(client.state);
  client.on('syncStateChanged', renderStatus);
  setInterval(() => renderStatus(client.state), 15_000);
  client.on('rejected', ({ change, ack }) => notify(`The server refused a change to ${change.collection}: ${ack.error ?? ack.code ?? 'invalid'}`));
  client.on('conflict', ({ conflict }) => {
    if (conflict.outcome !== 'client_applied') notify(`A ${conflict.collection} record was also changed elsewhere; the team's rule kept ${conflict.outcome.replace('_', ' ')}.`);
  });
  // The server kept an existing conversation for one made here: show that one.
  client.on('idChanged', ({ localId, serverId }) => {
    if (location.hash.includes(localId)) location.hash = location.hash.replace(localId, serverId);
  });
  client.on('error', (error) => {
    if (error.code === 'UNAUTHORIZED') notify('Your session ended; sign out and in again.');
  });
  $('#sign-out').onclick = async () => {
    if (client.state.pending > 0 && !confirm(`${client.state.pending} changes are not synced yet and stay on this device. Sign out?`)) return;
    await client.close();
    await logout();
    location.hash = '';
    location.reload();
  };

  let current: View | undefined;
  const route = () => {
    const [, name = 'contacts', ...rest] = location.hash.split('/');
    const make = VIEWS[name] ?? contactsView;
    current?.stop();
    for (const tab of document.querySelectorAll<HTMLAnchorElement>('#tabs a')) tab.classList.toggle('active', tab.dataset.tab === (VIEWS[name] ? name : 'contacts'));
    const view = $('#view');
    replace(view);
    current = make({ client, user, root: view, notify, param: rest.join('/') || undefined });
  };
  window.addEventListener('hashchange', route);
  route();
  client.connect(); // live: syncs now and on every reconnection, pushes each change shortly after it
}

registerServiceWorker();
const session = currentSession();
if (session) void startApp(session.user);
else showLogin();
