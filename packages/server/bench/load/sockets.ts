/**
 * Connected devices from a process of their own: Socket.IO clients of the real server, or
 * plain WebSocket clients of the bare `ws` server (the physical limit). They record when each
 * change arrives; the marker of a change is the firstName of its first record, of a chat
 * message (`receive_message`) its content.
 *
 * Two Socket.IO clients: `socketio` is socket.io-client itself; `wire` speaks the same protocol
 * (Engine.IO 4 over WebSocket, Socket.IO 5 packets) on the plain `ws` client the limit's devices
 * use, so that ten thousand devices on one machine cost the load processes what the limit's
 * cost, not socket.io-client's own work per message ten thousand times over (work a phone does
 * on its own CPU). The devices read `changes` alone, as the SDK does (`seedEvents: false`).
 */
import { io, type Socket } from 'socket.io-client';
import WebSocket from 'ws';
import { serve } from '../lib/ipc.js';
import { sleep, within } from '../../src/lib/child-server.js';
import { wallNow } from '../lib/stats.js';

interface ChangesEvent {
  changes?: { data?: { firstName?: string } }[];
  message?: { content?: string };
}

const sockets: Socket[] = [];
/** `wire` devices: plain ws connections speaking Socket.IO's protocol. */
const wired: WebSocket[] = [];
const plain: WebSocket[] = [];
let armed = false;
/** Arrival times by marker. */
let arrivals = new Map<string, number[]>();
/** The first payload of each kind received: what the ws limit replays. */
const samples = new Map<string, unknown>();

function record(event: ChangesEvent, t: number, kind = 'changes') {
  if (!samples.has(kind)) samples.set(kind, event);
  if (!armed) return;
  arrived(kind === 'receive_message' ? event.message?.content : event.changes?.[0]?.data?.firstName, t);
}

function arrived(marker: unknown, t: number) {
  if (typeof marker !== 'string') return;
  let list = arrivals.get(marker);
  if (!list) arrivals.set(marker, (list = []));
  list.push(t);
}

/** The string value of the first `"key":"` in JSON text (the markers hold no escapes). */
function firstValue(text: string, key: string): string | undefined {
  const at = text.indexOf(key);
  if (at < 0) return undefined;
  const start = at + key.length;
  return text.slice(start, text.indexOf('"', start));
}

/**
 * Records a payload from its JSON text. The first of each kind is parsed whole (the sample the
 * limit replays, and a check of its shape); later ones are read for their marker only, the way
 * the pull loads read answers (bench/README.md): the devices of one machine spend their CPU on
 * receiving ten thousand events, not on parsing them, in the server's runs and the limit's alike.
 */
function recordText(text: string, t: number, kind: 'changes' | 'receive_message') {
  if (!samples.has(kind)) return record(JSON.parse(text) as ChangesEvent, t, kind);
  if (armed) arrived(firstValue(text, kind === 'changes' ? '"firstName":"' : '"content":"'), t);
}

/** Connects one authenticated Socket.IO client (from `localAddress` when given); resolves when the server says `authenticated`. */
function connectSocketIo(url: string, apiKey: string, deviceId: string, localAddress?: string): Promise<void> {
  // localAddress (a loopback address of its own) reaches Node's socket through engine.io-client and ws.
  const options = { auth: { apiKey, deviceId, seedEvents: false }, transports: ['websocket'], reconnection: false, forceNew: true, timeout: 20_000, localAddress };
  const socket = io(url, options as Parameters<typeof io>[1]);
  sockets.push(socket);
  socket.on('changes', (event: ChangesEvent) => record(event, wallNow()));
  socket.on('receive_message', (event: ChangesEvent) => record(event, wallNow(), 'receive_message'));
  return within(
    new Promise<void>((resolve, reject) => {
      socket.once('authenticated', () => resolve());
      socket.once('connect_error', (error) => reject(error));
      socket.once('auth_error', (error: unknown) => reject(new Error(JSON.stringify(error))));
    }),
    30_000,
    `socket ${deviceId}`,
  );
}

/**
 * One device speaking Socket.IO's wire protocol over a plain ws connection: the server's
 * Engine.IO open packet (`0{...}`) is answered with a Socket.IO CONNECT carrying the auth
 * (`40{...}`); pings (`2`) with pongs (`3`); events arrive as `42["name",payload]`. Resolves on
 * `authenticated`, rejects on a CONNECT_ERROR (`44{...}`), an `auth_error` or a close.
 */
function connectWire(url: string, apiKey: string, deviceId: string, localAddress?: string): Promise<void> {
  const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/socket.io/?EIO=4&transport=websocket`, { perMessageDeflate: false, localAddress });
  wired.push(ws);
  return within(
    new Promise<void>((resolve, reject) => {
      ws.on('message', (data) => {
        const text = data.toString();
        if (text === '2') return ws.send('3');
        if (text.startsWith('42["changes",')) recordText(text.slice(13, -1), wallNow(), 'changes');
        else if (text.startsWith('42["receive_message",')) recordText(text.slice(21, -1), wallNow(), 'receive_message');
        else if (text.startsWith('42')) {
          const [name, payload] = JSON.parse(text.slice(2)) as [string, unknown];
          if (name === 'authenticated') resolve();
          else if (name === 'auth_error') reject(new Error(JSON.stringify(payload)));
        } else if (text.startsWith('0')) ws.send(`40${JSON.stringify({ apiKey, deviceId, seedEvents: false })}`);
        else if (text.startsWith('44')) reject(new Error(`connect_error ${text.slice(2)}`));
      });
      ws.once('error', reject);
      ws.once('close', () => reject(new Error('closed before authenticated')));
    }),
    30_000,
    `socket ${deviceId}`,
  );
}

function connectWs(url: string, localAddress?: string): Promise<void> {
  const ws = new WebSocket(url, { perMessageDeflate: false, localAddress });
  plain.push(ws);
  ws.on('message', (data) => {
    const text = data.toString();
    recordText(text, wallNow(), text.includes('"changes":[') ? 'changes' : 'receive_message');
  });
  return within(
    new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    }),
    30_000,
    'ws client',
  );
}

serve({
  /**
   * Opens the connections `concurrency` at a time. Socket.IO: one per entry of `devices`;
   * ws: `count` to `url`. Answers how many connected and how long it took.
   */
  async connect(arg: {
    mode: 'socketio' | 'wire' | 'ws';
    url: string;
    devices?: { apiKey: string; deviceId: string; localAddress?: string }[];
    count?: number;
    /** ws: the loopback addresses the clients connect from, in turn. */
    localAddresses?: string[];
    concurrency: number;
  }) {
    const total = arg.mode === 'ws' ? arg.count! : arg.devices!.length;
    const t0 = wallNow();
    let connected = 0;
    let failed = 0;
    let firstError: string | undefined;
    for (let start = 0; start < total; start += arg.concurrency) {
      const wave = Array.from({ length: Math.min(arg.concurrency, total - start) }, (_, k) => {
        if (arg.mode === 'ws') return connectWs(arg.url, arg.localAddresses?.[(start + k) % arg.localAddresses.length]);
        const { apiKey, deviceId, localAddress } = arg.devices![start + k];
        return (arg.mode === 'wire' ? connectWire : connectSocketIo)(arg.url, apiKey, deviceId, localAddress);
      });
      for (const outcome of await Promise.allSettled(wave)) {
        if (outcome.status === 'fulfilled') connected++;
        else {
          failed++;
          firstError ??= String(outcome.reason?.message ?? outcome.reason);
        }
      }
      if (failed > 100) break;
    }
    return { connected, failed, firstError, ms: wallNow() - t0 };
  },

  /** Starts recording arrivals (forgetting earlier ones). */
  arm() {
    arrivals = new Map();
    armed = true;
  },

  /** Stops recording; answers the arrival times by marker. */
  collect() {
    armed = false;
    return Object.fromEntries(arrivals);
  },

  /** The first payload of `kind` this process received (the ws limit broadcasts the same shape). */
  sample: (kind = 'changes') => samples.get(kind),

  /** How many of this process's connections are still open. */
  open: () => sockets.filter((s) => s.connected).length + [...wired, ...plain].filter((w) => w.readyState === WebSocket.OPEN).length,

  async close() {
    for (const s of sockets.splice(0)) s.disconnect();
    for (const w of [...wired.splice(0), ...plain.splice(0)]) w.terminate();
    await sleep(200);
  },
});
