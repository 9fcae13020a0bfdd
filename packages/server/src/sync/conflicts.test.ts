import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { clampTimestamp, decide, MAX_CLOCK_SKEW_MS, STRATEGIES, type Policy, type Strategy } from './conflicts.js';

/** A pure model of the server: one record, its version and the history of edits. */
interface ModelServer {
  record: Record<string, unknown>;
  isDeleted: boolean;
  version: number;
  history: { version: number; fields: string[]; at: number }[];
  reviewQueue: number;
}

interface ModelChange {
  device: number;
  operation: 'update' | 'delete';
  fields: Record<string, unknown>;
  at: number;
  baseVersion: number;
}

const FIELDS = ['status', 'notes', 'doNotCall', 'company'] as const;
const STATUS = ['open', 'contacted', 'closed'];
const ESCALATION: Policy = { strategy: 'preserve_escalation', monotonic: { doNotCall: [false, true], status: STATUS } };

const policyOf = (strategy: Strategy): Policy => (strategy === 'preserve_escalation' ? ESCALATION : { strategy });

function newServer(): ModelServer {
  return { record: { status: 'open', notes: '', doNotCall: false, company: 'A' }, isDeleted: false, version: 1, history: [], reviewQueue: 0 };
}

/** Applies one change to the model as the push engine does. */
function push(server: ModelServer, policy: Policy, change: ModelChange): void {
  const decision = decide(
    policy,
    { record: server.record, isDeleted: server.isDeleted, editsSinceBase: server.history.filter((h) => h.version > change.baseVersion) },
    { operation: change.operation, fields: change.fields, at: change.at },
  );
  if (decision.outcome === 'pending_review') server.reviewQueue++;
  if (decision.apply === null) return;
  server.version++;
  if (decision.apply === 'delete') {
    server.isDeleted = true;
    server.history.push({ version: server.version, fields: ['isDeleted'], at: change.at });
    return;
  }
  server.record = { ...server.record, ...decision.apply };
  server.history.push({ version: server.version, fields: Object.keys(decision.apply), at: change.at });
}

const valueOf = (field: (typeof FIELDS)[number]) =>
  field === 'status' ? fc.constantFrom(...STATUS) : field === 'doNotCall' ? fc.boolean() : fc.string({ maxLength: 5 });

const updateArb = fc
  .subarray([...FIELDS], { minLength: 1 })
  .chain((fields) => fc.tuple(...fields.map((f) => valueOf(f).map((v) => [f, v] as const))))
  .map((entries) => Object.fromEntries(entries));

/** Concurrent offline changes: every device edited from the same base (version 1). */
const concurrentChanges = (withDeletes: boolean) =>
  fc
    .uniqueArray(fc.integer({ min: 1, max: 1_000_000 }), { minLength: 1, maxLength: 8 })
    .chain((times) =>
      fc.tuple(
        ...times.map((at, i) =>
          fc.record({
            device: fc.constant(i),
            operation: withDeletes ? fc.constantFrom<'update' | 'delete'>('update', 'update', 'update', 'delete') : fc.constant<'update'>('update'),
            fields: updateArb,
            at: fc.constant(at),
            baseVersion: fc.constant(1),
          }),
        ),
      ),
    )
    .map((changes) => changes.map((c) => (c.operation === 'delete' ? { ...c, fields: {} } : c)));

const orders = <T>(items: T[]) => fc.shuffledSubarray(items, { minLength: items.length, maxLength: items.length });

describe('conflict policies', () => {
  it.each(['most_recent_wins', 'field_merge', 'preserve_escalation'] as const)(
    '%s converges to one state whatever the arrival order of concurrent changes',
    (strategy) => {
      fc.assert(
        fc.property(
          concurrentChanges(true).chain((changes) => fc.tuple(fc.constant(changes), orders(changes), orders(changes))),
          ([, orderA, orderB]) => {
            const a = newServer();
            const b = newServer();
            for (const c of orderA) push(a, policyOf(strategy), c);
            for (const c of orderB) push(b, policyOf(strategy), c);
            expect(b.isDeleted).toBe(a.isDeleted);
            if (!a.isDeleted) expect(b.record).toEqual(a.record);
          },
        ),
        { numRuns: 300 },
      );
    },
  );

  it('most_recent_wins keeps, field by field, the value of the latest change that set it', () => {
    fc.assert(
      fc.property(concurrentChanges(false).chain((changes) => orders(changes)), (arrival) => {
        const server = newServer();
        for (const c of arrival) push(server, { strategy: 'most_recent_wins' }, c);
        for (const field of FIELDS) {
          const setters = arrival.filter((c) => field in c.fields).sort((x, y) => y.at - x.at);
          if (setters.length > 0) expect(server.record[field]).toEqual(setters[0].fields[field]);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('every policy only ever stores values some change wrote, and manual queues instead of writing', () => {
    fc.assert(
      fc.property(fc.constantFrom(...STRATEGIES), concurrentChanges(true).chain((c) => orders(c)), (strategy, arrival) => {
        const server = newServer();
        const initial = { ...server.record };
        for (const c of arrival) push(server, policyOf(strategy), c);
        for (const field of FIELDS) {
          const written = [initial[field], ...arrival.filter((c) => field in c.fields).map((c) => c.fields[field])];
          expect(written).toContainEqual(server.record[field]);
        }
        if (strategy === 'manual' && arrival.every((c) => c.operation === 'update')) {
          // Each change is either applied (it touched nothing the server changed since the
          // base) or queued; so the applied ones never overlap one another.
          expect(server.reviewQueue + server.history.length).toBe(arrival.length);
          const applied = server.history.flatMap((h) => h.fields);
          expect(new Set(applied).size).toBe(applied.length);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('preserve_escalation never lowers a monotonic field, whatever arrives', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            device: fc.nat(5),
            operation: fc.constant<'update'>('update'),
            fields: updateArb,
            at: fc.integer({ min: 1, max: 1_000_000 }),
            baseVersion: fc.nat(10),
          }),
          { maxLength: 20 },
        ),
        (changes) => {
          const server = newServer();
          let status = 0;
          let dnc = false;
          for (const c of changes) {
            push(server, ESCALATION, { ...c, baseVersion: Math.min(c.baseVersion, server.version) });
            const now = STATUS.indexOf(server.record.status as string);
            expect(now).toBeGreaterThanOrEqual(status);
            status = now;
            if (dnc) expect(server.record.doNotCall).toBe(true);
            dnc = server.record.doNotCall as boolean;
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('server_wins never overwrites a field the server changed since the base', () => {
    const server = newServer();
    push(server, { strategy: 'server_wins' }, { device: 0, operation: 'update', fields: { notes: 'server' }, at: 10, baseVersion: 1 });
    push(server, { strategy: 'server_wins' }, { device: 1, operation: 'update', fields: { notes: 'client', company: 'B' }, at: 20, baseVersion: 1 });
    expect(server.record).toMatchObject({ notes: 'server', company: 'A' });
  });

  it('client_wins applies the client fields even over newer server edits', () => {
    const d = decide(
      { strategy: 'client_wins' },
      { record: { notes: 'server' }, isDeleted: false, editsSinceBase: [{ fields: ['notes'], at: 100 }] },
      { operation: 'update', fields: { notes: 'client' }, at: 1 },
    );
    expect(d).toEqual({ apply: { notes: 'client' }, conflict: true, outcome: 'client_applied' });
  });

  it('manual keeps the server state and queues every conflicting change for review', () => {
    const d = decide(
      { strategy: 'manual' },
      { record: { notes: 'server' }, isDeleted: false, editsSinceBase: [{ fields: ['notes'], at: 1 }] },
      { operation: 'update', fields: { notes: 'client' }, at: 2 },
    );
    expect(d).toEqual({ apply: null, conflict: true, outcome: 'pending_review' });
  });

  it('applies a change without conflict when the server did not touch its fields since the base', () => {
    for (const strategy of STRATEGIES) {
      const d = decide(
        { strategy },
        { record: { notes: 'n', company: 'A' }, isDeleted: false, editsSinceBase: [{ fields: ['company'], at: 50 }] },
        { operation: 'update', fields: { notes: 'client' }, at: 1 },
      );
      expect(d, strategy).toEqual({ apply: { notes: 'client' }, conflict: false, outcome: 'client_applied' });
    }
  });

  it('a delete conflicts with any server change since the base, and never resurrects', () => {
    const edited = { record: { notes: 'n' }, isDeleted: false, editsSinceBase: [{ fields: ['notes'], at: 50 }] };
    expect(decide({ strategy: 'server_wins' }, edited, { operation: 'delete', fields: {}, at: 60 }).outcome).toBe('server_kept');
    expect(decide({ strategy: 'manual' }, edited, { operation: 'delete', fields: {}, at: 60 }).outcome).toBe('pending_review');
    expect(decide({ strategy: 'most_recent_wins' }, edited, { operation: 'delete', fields: {}, at: 10 })).toEqual({
      apply: 'delete',
      conflict: true,
      outcome: 'client_applied',
    });
    const deleted = { record: {}, isDeleted: true, editsSinceBase: [] };
    for (const strategy of STRATEGIES) {
      expect(decide({ strategy }, deleted, { operation: 'update', fields: { notes: 'x' }, at: 99 }).apply, strategy).toBeNull();
    }
  });

  it('clamps timestamps more than five minutes in the future to the receipt time', () => {
    expect(clampTimestamp(1000 + MAX_CLOCK_SKEW_MS + 1, 1000)).toBe(1000);
    expect(clampTimestamp(1000 + MAX_CLOCK_SKEW_MS, 1000)).toBe(1000 + MAX_CLOCK_SKEW_MS);
    expect(clampTimestamp(5, 1000)).toBe(5);
  });
});
