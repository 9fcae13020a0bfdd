import type { Db } from '../db/db.js';
import { pgErrorCode } from '../db/db.js';
import { AppError } from '../errors.js';
import type { CollectionRegistry } from './collections.js';
import type { ChangeFeed } from './feed.js';
import type { PolicyStore, TenantPolicies } from './policies.js';
import { decideBatch } from './push/decide.js';
import { loadBatch } from './push/load.js';
import { createParser } from './push/parse.js';
import { isRejected, type ChangeResult, type Parsed, type PushCaller, type PushOptions } from './push/types.js';
import { writeBatch, type Written } from './push/write.js';
import { withTenantWrite, type TenantTx } from './versions.js';

export type { ChangeErrorCode, ChangeResult, PushCaller, PushOptions } from './push/types.js';
export { changeKey } from './push/parse.js';

export interface PushOutcome {
  results: ChangeResult[];
  fromVersion: number;
  toVersion: number;
}

/**
 * Errors a change's own values can cause in the database (data exceptions, integrity
 * violations, program limits such as an index row too large): contained per change. Anything
 * else (a lost connection, a timeout) is the server's and fails the request.
 */
const isChangeCaused = (error: unknown) => /^(22|23|54)/.test(pgErrorCode(error) ?? '');

/** For all-or-nothing writes: the first rejected change's error. */
function throwFirstRejection(results: Iterable<ChangeResult>): void {
  for (const r of results) {
    if (!r.ack.success) throw new AppError(r.ack.code ?? 'VALIDATION_FAILED', r.ack.error ?? 'The change was rejected', r.details);
  }
}

const refusal = (error: unknown) =>
  `The database refused a value of this change (${pgErrorCode(error)}: ${(error as Error).message.slice(0, 200)})`;

/**
 * The write half of sync (SPEC §4 "Batched push"): applies a device's changes in order, each
 * with its own result, all accepted ones in one transaction of the tenant; re-sent changes are
 * answered from their receipts; conflicting ones go through the tenant's policy. Four steps,
 * each in its own file: parse (no database), load (a fixed number of reads under the tenant
 * lock), decide (in memory, change by change), write (one upsert per collection, one
 * bookkeeping statement, hooks).
 */
export function createPushEngine(deps: { db: Db; registry: CollectionRegistry; feed: ChangeFeed; policies: PolicyStore }) {
  const { db, registry } = deps;
  const parse = createParser(registry);

  type RunOptions = PushOptions & { now: number; policies: TenantPolicies };

  /** Load, decide and write `live` in the tenant transaction `tx`. */
  const run = async (tx: TenantTx, caller: PushCaller, live: Parsed[], opts: RunOptions) => {
    const ctx = await loadBatch(tx, registry, caller, live, { receipts: opts.receipts !== false, policies: opts.policies });
    const decisions = decideBatch(caller, live, ctx, { ...opts, nextVersion: (collection) => tx.nextVersion(collection) });
    if (opts.allOrNothing) throwFirstRejection(decisions.results.values());
    return { results: decisions.results, written: await writeBatch(tx, registry, caller, decisions, opts.now) };
  };

  /**
   * The batch again after a database error, one change at a time under savepoints: the change
   * that caused it is rejected with the database's reason, the others commit as usual.
   */
  const runContained = async (tx: TenantTx, caller: PushCaller, live: Parsed[], opts: RunOptions) => {
    const results = new Map<Parsed, ChangeResult>();
    const written: Written = { published: [], events: [], userChanges: [], membership: [] };
    for (const p of live) {
      try {
        const one = await tx.savepoint(() => run(tx, caller, [p], opts));
        for (const [k, v] of one.results) results.set(k, v);
        written.published.push(...one.written.published);
        written.events.push(...one.written.events);
        written.userChanges.push(...one.written.userChanges);
        written.membership.push(...one.written.membership);
      } catch (error) {
        if (!isChangeCaused(error)) throw error;
        results.set(p, {
          ack: {
            changeId: p.raw.changeId,
            localId: p.raw.localId ?? null,
            serverId: p.raw.id ?? null,
            entityType: p.raw.entityType,
            operation: p.op,
            success: false,
            status: 'rejected',
            code: 'VALIDATION_FAILED',
            error: refusal(error),
          },
        });
      }
    }
    return { results, written };
  };

  /** Commits a prepared batch: the tenant write, then the feed. */
  const commit = async (caller: PushCaller, parsed: ReturnType<typeof parse>[], live: Parsed[], runOpts: RunOptions): Promise<PushOutcome> => {
    let committed;
    try {
      committed = await withTenantWrite(db, caller.tenantId, async (tx) => {
        await runOpts.within?.(tx);
        return run(tx, caller, live, runOpts);
      });
    } catch (error) {
      if (!isChangeCaused(error)) throw error;
      if (runOpts.allOrNothing) throw new AppError('VALIDATION_FAILED', refusal(error));
      committed = await withTenantWrite(db, caller.tenantId, async (tx) => {
        await runOpts.within?.(tx);
        return runContained(tx, caller, live, runOpts);
      });
    }
    const { results, written } = committed.result;
    deps.feed.publish({
      tenantId: caller.tenantId,
      fromVersion: committed.fromVersion,
      toVersion: committed.toVersion,
      changes: written.published.map((p) => p.change),
      audience: written.published.map((p) => p.audience),
      userChanges: written.userChanges,
      membership: written.membership,
      events: written.events,
      origin: { userId: caller.userId, agentCode: caller.agentCode, deviceId: caller.deviceId, socketId: caller.socketId },
    });
    return {
      results: parsed.map((p) => (isRejected(p) ? p : results.get(p)!)),
      fromVersion: committed.fromVersion,
      toVersion: committed.toVersion,
    };
  };

  const engine = {
    /**
     * The half of `apply` that needs no lock: checks every change and reads the tenant's
     * policies. A large write prepares its next batch while the one before commits (the CSV
     * import); `commit` then applies it as `apply` would.
     */
    async prepare(caller: PushCaller, raw: unknown[], opts: PushOptions = {}): Promise<PreparedPush> {
      const now = opts.now ?? Date.now();
      const parsed = raw.map((change, index) => parse(change, index, now));
      if (opts.allOrNothing) throwFirstRejection(parsed.filter(isRejected));
      const live = parsed.filter((p): p is Parsed => !isRejected(p));
      if (live.length === 0) return { commit: async () => ({ results: parsed as ChangeResult[], fromVersion: 0, toVersion: 0 }) };
      // Policies are settings, not data: read before the tenant lock, so its holder does less.
      // A batch applies the policies in force when it arrived.
      const policies = await deps.policies.forTenant(db, caller.tenantId);
      const runOpts: RunOptions = { ...opts, now, policies };
      return { commit: () => commit(caller, parsed, live, runOpts) };
    },

    /**
     * Applies a batch of changes as `caller`; per-change results in input order. `raw` items
     * are unchecked: each is validated on its own.
     */
    async apply(caller: PushCaller, raw: unknown[], opts: PushOptions = {}): Promise<PushOutcome> {
      return (await engine.prepare(caller, raw, opts)).commit();
    },
  };
  return engine;
}

/** A checked batch waiting for its tenant write (`PushEngine.prepare`). */
export interface PreparedPush {
  commit(): Promise<PushOutcome>;
}

export type PushEngine = ReturnType<typeof createPushEngine>;
