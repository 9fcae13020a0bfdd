import type { PulledPage } from './pull.js';

/**
 * Recently pulled pages, shared by every device that asks for the same page. A page is the
 * answer to (tenant, collections, scope, since, limit) at one latest version: it never changes
 * for that version, so an entry is served only while the tenant's latest committed version is
 * still the one it was read at (the caller reads that version first), on any instance. This is
 * what a team's devices at the same checkpoint hit when one change reaches all of them.
 *
 * Bounded by what an entry really costs (`costOf`): its key, the page object and map entry,
 * the JSON text, and the bytes it is sent as; least recently used pages go first. A page
 * larger than an eighth of the budget (an initial-sync page of a large tenant) is not kept.
 *
 * Pages are offered (`offer`) and kept from the second time their key is offered: a page asked
 * for once (a device at a checkpoint of its own) would only push shared pages out, and every
 * page kept outlives the young generation, so keeping each one costs the process a share of a
 * full garbage collection. The keys offered once are remembered, up to `DOORKEEPER_KEYS`.
 */
export class PageCache {
  private readonly entries = new Map<string, { page: PulledPage; cost: number }>();
  /** Keys offered once and not kept, oldest first. */
  private readonly offered = new Set<string>();
  private bytes = 0;
  private hitCount = 0;
  private missCount = 0;

  constructor(private readonly maxBytes: number) {}

  /** The page stored under `key` if it was read at `latestVersion`. */
  get(key: string, latestVersion: number): PulledPage | undefined {
    const entry = this.entries.get(key);
    if (!entry || entry.page.latestVersion !== latestVersion) {
      this.missCount++;
      return undefined;
    }
    // Most recently used last: Map keeps insertion order.
    this.entries.delete(key);
    this.entries.set(key, entry);
    this.hitCount++;
    return entry.page;
  }

  /** Whether a page is stored under `key`, at whatever version (no hit or miss counted). */
  has(key: string): boolean {
    return this.entries.has(key);
  }

  /** Keeps `page` if its key was offered before (recently enough to be remembered); else remembers the key. */
  offer(key: string, page: PulledPage): void {
    if (this.entries.has(key) || this.offered.delete(key)) {
      this.set(key, page);
      return;
    }
    this.offered.add(key);
    if (this.offered.size > DOORKEEPER_KEYS) this.offered.delete(this.offered.values().next().value!);
  }

  /** Keeps `page` under `key`, dropping the least recently used pages over the budget. */
  set(key: string, page: PulledPage): void {
    const cost = costOf(key, page);
    if (cost > this.maxBytes / 8) return;
    this.remove(key);
    this.entries.set(key, { page, cost });
    this.bytes += cost;
    for (const [oldest, old] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(oldest);
      this.bytes -= old.cost;
    }
  }

  /** Entries, bytes held, hits and misses so far. */
  stats(): { entries: number; bytes: number; hits: number; misses: number } {
    return { entries: this.entries.size, bytes: this.bytes, hits: this.hitCount, misses: this.missCount };
  }

  private remove(key: string): void {
    const old = this.entries.get(key);
    if (!old) return;
    this.entries.delete(key);
    this.bytes -= old.cost;
  }
}

/** How many keys offered once a cache remembers (about 150 bytes each: under 1 MB). */
export const DOORKEEPER_KEYS = 4096;

// Measured on Node 20 (test/page-cache-memory.test.ts checks the sum against the heap):
/** The Map entry, the page object, the entry record and the headers of its two strings. */
const ENTRY_BYTES = 200;
/** A Buffer object, its ArrayBuffer and the WeakMap entry that ties it to the page (pull.ts). */
const ENCODED_OBJECT_BYTES = 320;
/** The envelope around the changes in the bytes sent (`deltaEnvelopeJson`). */
const ENVELOPE_CHARS = 128;

/**
 * What keeping `page` under `key` costs in memory, in bytes: the key (ASCII), the JSON text
 * (one byte a character when ASCII, else up to two), and once sent the UTF-8 bytes of the
 * answer. Those are encoded by `Buffer.from`, which carves a short one (under half of
 * `Buffer.poolSize`) out of a shared 8 KiB slab and so keeps the whole slab alive as long as
 * the page is cached: such a page is charged the slab. (Encoding cached pages into buffers of
 * their own would cut that charge to the bytes themselves.)
 */
export function costOf(key: string, page: PulledPage): number {
  const chars = page.changesJson.length;
  const utf8 = Buffer.byteLength(page.changesJson, 'utf8');
  const text = utf8 === chars ? chars : 2 * chars;
  const sent = utf8 + ENVELOPE_CHARS;
  const encoded = sent < Buffer.poolSize >>> 1 ? Buffer.poolSize : sent;
  const keyBytes = Buffer.byteLength(key, 'utf8') === key.length ? key.length : 2 * key.length;
  return ENTRY_BYTES + keyBytes + text + ENCODED_OBJECT_BYTES + encoded;
}
