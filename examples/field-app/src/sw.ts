/**
 * The field app's service worker: keeps the app shell (HTML, script, styles, manifest, icons)
 * in a cache named after the shell's version, so the app opens offline after its first load.
 * Navigations inside the app answer the cached page; other shell files come from the cache,
 * then the network. API calls and the socket are not touched: the SDK and IndexedDB handle
 * offline data. A new version (any byte of the shell changed) replaces the old cache.
 */
declare const __SHELL_VERSION__: string;
declare const __SHELL_FILES__: string[];

interface ExtendableEvent extends Event {
  waitUntil(promise: Promise<unknown>): void;
}
interface FetchEvent extends ExtendableEvent {
  request: Request;
  respondWith(response: Promise<Response> | Response): void;
}
interface WorkerScope {
  registration: { scope: string };
  skipWaiting(): Promise<void>;
  clients: { claim(): Promise<void> };
  addEventListener(type: 'install' | 'activate', listener: (event: ExtendableEvent) => void): void;
  addEventListener(type: 'fetch', listener: (event: FetchEvent) => void): void;
}

const worker = self as unknown as WorkerScope;
const CACHE = `fieldsync-shell-${__SHELL_VERSION__}`;
const scope = new URL(worker.registration.scope);
const shellUrls = __SHELL_FILES__.map((file) => new URL(file, scope).href);
const page = new URL('./', scope).href;

worker.addEventListener('install', (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => cache.addAll(shellUrls.map((url) => new Request(url, { cache: 'reload' }))))
      .then(() => worker.skipWaiting()),
  );
});

worker.addEventListener('activate', (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((key) => key.startsWith('fieldsync-shell-') && key !== CACHE).map((key) => caches.delete(key))))
      .then(() => worker.clients.claim()),
  );
});

worker.addEventListener('fetch', (event) => {
  const { request } = event;
  if (request.method !== 'GET') return;
  const url = new URL(request.url);
  if (url.origin !== scope.origin || !url.pathname.startsWith(scope.pathname)) return;
  if (request.mode === 'navigate') {
    // The page: fresh from the network when there is one (a new version shows at once), else the kept one.
    event.respondWith(
      fetch(request)
        .then((response) => (response.ok ? response : caches.match(page).then((cached) => cached ?? response)))
        .catch(() => caches.match(page).then((cached) => cached ?? Response.error())),
    );
    return;
  }
  if (!shellUrls.includes(url.origin + url.pathname)) return;
  event.respondWith(caches.match(url.origin + url.pathname).then((cached) => cached ?? fetch(request)));
});
