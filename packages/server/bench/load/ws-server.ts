/**
 * The physical limit of fan-out and of idle connections: a bare `ws` server. Clients join a
 * room with `?room=`; `POST /broadcast?room=` sends the request body to every client of the
 * room, as is, and answers 204; `GET /health` answers 200 (for nginx in front of it).
 */
import http from 'node:http';
import { WebSocketServer, type WebSocket } from 'ws';
import { serve } from '../lib/ipc.js';

let server: http.Server | undefined;
let wss: WebSocketServer | undefined;
const rooms = new Map<string, Set<WebSocket>>();

const roomOf = (url: string | undefined) => new URL(url ?? '/', 'http://x').searchParams.get('room') ?? 'default';

serve({
  async start() {
    server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        // nginx in front of it waits for GET /health before the run starts.
        if (req.method === 'GET' && req.url === '/health') {
          res.writeHead(200).end('ok');
          return;
        }
        if (req.method !== 'POST' || !req.url?.startsWith('/broadcast')) {
          res.writeHead(404).end();
          return;
        }
        const body = Buffer.concat(chunks).toString('utf8');
        for (const ws of rooms.get(roomOf(req.url)) ?? []) ws.send(body);
        res.writeHead(204).end();
      });
    });
    server.keepAliveTimeout = 60_000;
    wss = new WebSocketServer({ server, perMessageDeflate: false });
    wss.on('connection', (ws, req) => {
      const room = roomOf(req.url);
      let members = rooms.get(room);
      if (!members) rooms.set(room, (members = new Set()));
      members.add(ws);
      ws.on('close', () => members.delete(ws));
    });
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    return { url: `http://127.0.0.1:${port}`, wsUrl: `ws://127.0.0.1:${port}` };
  },
  /** Memory after a full garbage collection (the worker runs with --expose-gc). */
  memory() {
    const gc = (globalThis as { gc?: () => void }).gc;
    gc?.();
    gc?.();
    return process.memoryUsage();
  },
  async stop() {
    for (const ws of wss?.clients ?? []) ws.terminate();
    await new Promise<void>((resolve) => (wss ? wss.close(() => resolve()) : resolve()));
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  },
});
