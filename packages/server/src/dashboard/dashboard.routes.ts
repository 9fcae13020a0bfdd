import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyPluginAsync } from 'fastify';

const packages = createRequire(import.meta.url);
/**
 * The page's files, found from the package root as migrations are: the same path from the
 * sources (src/dashboard/) and from a compiled bundle two levels down (dist/server/).
 */
const PUBLIC_DIR = fileURLToPath(new URL('../../src/dashboard/public/', import.meta.url));

/**
 * The dashboard's Content-Security-Policy: scripts, styles and data from this origin only,
 * no inline script or style, no framing, no plugins. uPlot sets styles through the CSSOM,
 * which `style-src 'self'` allows.
 */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/** Where the vendored browser modules live inside installed packages: served as they are, no build step. */
function vendorDirs() {
  return {
    uplot: dirname(packages.resolve('uplot')),
    socketio: join(dirname(packages.resolve('socket.io')), '..', 'client-dist'),
  };
}

/**
 * The web dashboard (SPEC §11) at `/dashboard/`: static ES modules and styles, no inline
 * script, a strict CSP on every answer of this plugin. The page talks to the same API as
 * everyone (login with login + password, then `Authorization: Bearer`), so the API's roles
 * decide what it shows: an agent's token gets 403s and the page says so.
 */
export function dashboardRoutes(): FastifyPluginAsync {
  return async (app) => {
    const vendor = vendorDirs();
    app.addHook('onSend', async (_request, reply) => {
      reply.header('content-security-policy', DASHBOARD_CSP);
      reply.header('x-frame-options', 'DENY');
      reply.header('referrer-policy', 'no-referrer');
      reply.header('cache-control', 'no-cache');
    });
    app.get('/dashboard', { schema: { hide: true }, config: { auth: false } }, async (_request, reply) => reply.redirect('/dashboard/', 302));
    await app.register(fastifyStatic, { root: PUBLIC_DIR, prefix: '/dashboard/', index: ['index.html'], wildcard: false, schemaHide: true });
    await app.register(fastifyStatic, {
      root: vendor.uplot,
      prefix: '/dashboard/vendor/uplot/',
      allowedPath: (path) => path === '/uPlot.esm.js' || path === '/uPlot.min.css',
      decorateReply: false,
      wildcard: false,
      schemaHide: true,
    });
    await app.register(fastifyStatic, {
      root: vendor.socketio,
      prefix: '/dashboard/vendor/socket.io/',
      allowedPath: (path) => path === '/socket.io.esm.min.js',
      decorateReply: false,
      wildcard: false,
      schemaHide: true,
    });
  };
}
