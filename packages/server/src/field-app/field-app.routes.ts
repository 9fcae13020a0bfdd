import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyPluginAsync } from 'fastify';
import { AppError } from '../errors.js';

/**
 * The field app's folder (examples/field-app), found from the repository root as the
 * dashboard's pages are from the package root: the same path from the sources
 * (src/field-app/) and from a compiled bundle (dist/server/).
 */
const APP_DIR = fileURLToPath(new URL('../../../../examples/field-app/', import.meta.url));

/**
 * The field app's Content-Security-Policy: everything from this origin only (the API and the
 * Socket.IO WebSocket included: `'self'` covers ws/wss of the same host), no inline script or
 * style, no framing, no plugins; the service worker and the manifest from here too.
 */
export const FIELD_APP_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "connect-src 'self'",
  "worker-src 'self'",
  "manifest-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
  map: 'application/json; charset=utf-8',
  svg: 'image/svg+xml',
  png: 'image/png',
  webmanifest: 'application/manifest+json; charset=utf-8',
};

type Shell = Map<string, Uint8Array>;

/** The newest modification time under `dir`. */
function newest(dir: string): number {
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    latest = Math.max(latest, entry.isDirectory() ? newest(path) : statSync(path).mtimeMs);
  }
  return latest;
}

/**
 * The app's files: examples/field-app/dist when `npm run build` wrote it and no source is newer
 * (what a deployment without dev dependencies serves), else built in memory with esbuild (a
 * fresh clone's `npm start`, development).
 */
async function loadShell(dir: string): Promise<Shell> {
  const dist = join(dir, 'dist');
  const sources = [join(dir, 'src'), join(dir, 'public'), join(dir, '..', '..', 'packages', 'client', 'src'), join(dir, '..', '..', 'packages', 'protocol', 'src')].filter(existsSync);
  const fresh = existsSync(join(dist, 'sw.js')) && (sources.length === 0 || statSync(join(dist, 'sw.js')).mtimeMs >= Math.max(...sources.map(newest)));
  if (fresh) {
    try {
      return new Map(readdirSync(dist).map((name) => [name, readFileSync(join(dist, name))]));
    } catch {
      // A build replacing dist/ right now: build from the sources instead.
    }
  }
  const builder = join(dir, 'build.mjs');
  if (!existsSync(builder)) throw new Error(`The field app is not built (no ${dist}) and its sources are missing`);
  const { buildFieldApp } = (await import(builder)) as { buildFieldApp: () => Promise<Shell> };
  return buildFieldApp();
}

/**
 * The offline-first field app (SPEC §13) at `/app/`: the files of examples/field-app, built on
 * the first request, with a strict CSP on every answer. The app talks to the same API and
 * socket as every device (login with login + password, then `Authorization: Bearer`).
 */
export function fieldAppRoutes(opts: { dir?: string } = {}): FastifyPluginAsync {
  const dir = opts.dir ?? APP_DIR;
  let shell: Promise<Shell> | undefined;
  const files = () => {
    shell ??= loadShell(dir).catch((error) => {
      shell = undefined; // try again on the next request (a source fixed, a build made)
      throw error;
    });
    return shell;
  };
  return async (app) => {
    app.addHook('onSend', async (_request, reply) => {
      reply.header('content-security-policy', FIELD_APP_CSP);
      reply.header('x-frame-options', 'DENY');
      reply.header('referrer-policy', 'no-referrer');
      // Always revalidated: the service worker, not the HTTP cache, keeps the shell for offline use.
      reply.header('cache-control', 'no-cache');
    });
    app.get('/app', { schema: { hide: true }, config: { auth: false } }, async (_request, reply) => reply.redirect('/app/', 302));
    app.get<{ Params: { '*': string } }>('/app/*', { schema: { hide: true }, config: { auth: false } }, async (request, reply) => {
      const name = request.params['*'] || 'index.html';
      // Names of the shell only (no folders, no dot files): anything else is a 404, never a file lookup.
      if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$/.test(name)) throw new AppError('NOT_FOUND', 'No such file in the field app');
      let shellFiles: Shell;
      try {
        shellFiles = await files();
      } catch (error) {
        request.log.error({ err: error }, 'field app build failed');
        throw new AppError('UNAVAILABLE', 'The field app could not be built: run `npm run build` (see the server log)');
      }
      const body = shellFiles.get(name);
      if (!body) throw new AppError('NOT_FOUND', 'No such file in the field app');
      const type = TYPES[name.slice(name.lastIndexOf('.') + 1)] ?? 'application/octet-stream';
      return reply.type(type).send(Buffer.from(body));
    });
  };
}
