import type { PulledPage } from './pull.js';

/**
 * Recently pulled pages, shared by every device that asks for the same page. A page is the
 * answer to (tenant, collections, scope, since, limit) at one latest version: it never changes
 * for that version, so an entry is served only while the tenant's latest committed version is
 * still the one it was read at (the caller reads that version first), on any instance. This is
 * what a team's devices at the same checkpoint hit when one change reaches all of them.
 *
 * Bounded by the JSON held, counted twice (a page is kept as text and, once sent, as bytes);
 * least recently used pages go first. A page larger than an eighth of the budget (an
 * initial-sync page of a large tenant) is not kept.
 */
export class PageCache {
  private readonly entries = new Map<string, PulledPage>();
  private bytes = 0;
  private hitCount = 0;
  private missCount = 0;

  constructor(private readonly maxBytes: number) {}

  /** The page stored under `key` if it was read at `latestVersion`. */
  get(key: string, latestVersion: number): PulledPage | undefined {
    const page = this.entries.get(key);
    if (!page || page.latestVersion !== latestVersion) {
      this.missCount++;
      return undefined;
    }
    // Most recently used last: Map keeps insertion order.
    this.entries.delete(key);
    this.entries.set(key, page);
    this.hitCount++;
    return page;
  }

  /** Whether a page is stored under `key`, at whatever version (no hit or miss counted). */
  has(key: string): boolean {
    return this.entries.has(key);
  }

  set(key: string, page: PulledPage): void {
    const size = sizeOf(page);
    if (size > this.maxBytes / 8) return;
    this.remove(key);
    this.entries.set(key, page);
    this.bytes += size;
    for (const [oldest, old] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(oldest);
      this.bytes -= sizeOf(old);
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
    this.bytes -= sizeOf(old);
  }
}

/** What a page costs: its JSON text and the bytes it is sent as. */
const sizeOf = (page: PulledPage) => page.changesJson.length * 2;
