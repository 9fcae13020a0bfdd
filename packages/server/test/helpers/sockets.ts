import { io, type Socket } from 'socket.io-client';
import type { ClientToServerEvents, ServerToClientEvents, SocketAuth } from '@fieldsync/protocol/events';

/** A real socket.io-client socket speaking Fieldsync's event maps. */
export type ClientSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

/** One event as the client received it (reserved events such as `disconnect` included). */
export interface Received {
  event: string;
  payload: any;
  at: number;
}

/** How long a test waits for an event it expects before failing (generous: CI runs three suites at once on 2 cores). */
export const EVENT_TIMEOUT_MS = 10_000;
/** How long a test watches for an event it expects never to arrive (after a positive control). */
export const QUIET_MS = 300;

/**
 * A client socket that records everything it receives, in order, from before it connects:
 * tests then await events by name and predicate, whether they already arrived or not.
 */
export class Probe {
  readonly received: Received[] = [];
  private waiters = new Set<() => void>();

  constructor(readonly socket: ClientSocket) {
    socket.onAny((event, ...args) => this.record(event, args[0]));
    socket.on('connect', () => this.record('connect', undefined));
    socket.on('connect_error', (err) => this.record('connect_error', err));
    socket.on('disconnect', (reason) => this.record('disconnect', reason));
  }

  private record(event: string, payload: unknown) {
    this.received.push({ event, payload, at: Date.now() });
    for (const wake of this.waiters) wake();
  }

  /** Payloads of every `event` received so far (optionally after position `from`). */
  all(event: string, from = 0): any[] {
    return this.received.slice(from).filter((r) => r.event === event).map((r) => r.payload);
  }

  /** Names of the data events received so far (not connection life-cycle events). */
  dataEvents(from = 0): Received[] {
    return this.received.slice(from).filter((r) => !['connect', 'connect_error', 'disconnect', 'authenticated'].includes(r.event));
  }

  /** The first `event` (at or after position `from`) whose payload matches; waits for it if needed. */
  waitFor(event: string, match: (payload: any) => boolean = () => true, opts: { from?: number; timeoutMs?: number } = {}): Promise<any> {
    const from = opts.from ?? 0;
    const find = () => this.received.slice(from).find((r) => r.event === event && match(r.payload));
    const found = find();
    if (found) return Promise.resolve(found.payload);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        const seen = this.received.map((r) => r.event).join(', ');
        reject(new Error(`timed out after ${opts.timeoutMs ?? EVENT_TIMEOUT_MS} ms waiting for "${event}" (received: ${seen || 'nothing'})`));
      }, opts.timeoutMs ?? EVENT_TIMEOUT_MS);
      const check = () => {
        const hit = find();
        if (!hit) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(hit.payload);
      };
      this.waiters.add(check);
    });
  }

  /** Waits until `count` events named `event` matching `match` have arrived; returns them in order. */
  async waitForCount(event: string, count: number, match: (payload: any) => boolean = () => true, opts: { from?: number; timeoutMs?: number } = {}) {
    const from = opts.from ?? 0;
    const matching = () => this.all(event, from).filter(match);
    if (matching().length < count) {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          this.waiters.delete(check);
          reject(new Error(`timed out waiting for ${count} "${event}" events (got ${matching().length})`));
        }, opts.timeoutMs ?? EVENT_TIMEOUT_MS);
        const check = () => {
          if (matching().length < count) return;
          clearTimeout(timer);
          this.waiters.delete(check);
          resolve();
        };
        this.waiters.add(check);
      });
    }
    return matching();
  }

  /** Sends `event` and resolves with its acknowledgement (rejects when none comes in time). */
  ack(event: string, ...args: unknown[]): Promise<any> {
    return (this.socket.timeout(EVENT_TIMEOUT_MS) as any).emitWithAck(event, ...args);
  }

  /** Disconnects from the client side (the server learns of it asynchronously). */
  close(): void {
    this.socket.disconnect();
  }
}

export interface ConnectOptions {
  /** Handshake credentials; none means the socket must use the `authenticate` event. */
  auth?: SocketAuth | Record<string, unknown>;
}

/** Creates a probe on a new, not yet connected socket to `url` (websocket only, no reconnection). */
export function probe(url: string, opts: ConnectOptions = {}): Probe {
  const socket: ClientSocket = io(url, {
    autoConnect: false,
    forceNew: true,
    reconnection: false,
    transports: ['websocket'],
    auth: opts.auth as Record<string, unknown> | undefined,
  });
  const p = new Probe(socket);
  socket.connect();
  return p;
}

/** A socket authenticated in the handshake; resolves once the server has admitted it to its rooms. */
export async function authedProbe(url: string, auth: SocketAuth): Promise<Probe> {
  const p = probe(url, { auth });
  try {
    await Promise.race([
      p.waitFor('authenticated'),
      p.waitFor('connect_error').then((err) => {
        throw new Error(`connect_error: ${err?.message} ${JSON.stringify(err?.data)}`);
      }),
    ]);
  } catch (error) {
    p.close();
    throw error;
  }
  return p;
}

/** Resolves with the connect_error a socket with these credentials gets (fails if it connects). */
export async function refusedWith(url: string, auth: Record<string, unknown>): Promise<Error & { data?: any }> {
  const p = probe(url, { auth });
  try {
    const outcome = await Promise.race([
      p.waitFor('connect_error').then((err) => ({ err })),
      p.waitFor('connect').then(() => ({ err: undefined })),
    ]);
    if (!outcome.err) throw new Error(`expected connect_error for ${JSON.stringify(Object.keys(auth))}, but the socket connected`);
    return outcome.err;
  } finally {
    p.close();
  }
}

/** Closes every probe given (ignores ones already closed). */
export function closeAll(...probes: (Probe | undefined)[]) {
  for (const p of probes) p?.close();
}

/** Resolves after `ms`: only for watching that something does NOT happen. */
export const quiet = (ms = QUIET_MS) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `fn` until it returns a truthy value or the time runs out (for state with no event). */
export async function eventually<T>(fn: () => Promise<T | undefined | false>, timeoutMs = EVENT_TIMEOUT_MS, everyMs = 25): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined | false;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
