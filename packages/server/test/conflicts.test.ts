import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from './helpers/test-db.js';
import { createAgent, startTestApp, uniquePhone, type TestApp } from './helpers/test-app.js';
import { authedProbe, closeAll } from './helpers/sockets.js';

/** Conflicts end to end (SPEC §4 "Conflicts", docs/sync-protocol.md "Conflicts"): policies, the log, the review queue. */

const MINUTE = 60_000;
const ts = (offsetMs = 0) => new Date(Date.now() + offsetMs).toISOString();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Tenant {
  adminKey: string;
  deviceKey: string;
  otherDeviceKey: string;
}

describe.each(backends)('conflicts through HTTP on %s', (backend) => {
  let app: TestApp;
  let seq = 0;

  beforeAll(async () => {
    app = await startTestApp(backend);
  });
  afterAll(async () => {
    await app?.close();
  });

  /** A fresh tenant (its own policies and conflicts), with two device agents and, if given, a contacts policy. */
  const tenantWith = async (policy?: Record<string, unknown>): Promise<Tenant> => {
    const slug = `cf-${backend}-${++seq}-${randomUUID().slice(0, 8)}`;
    const created = await app.api('POST', '/api/tenants', { body: { name: `Conflicts ${seq}`, slug } });
    expect(created.status).toBe(201);
    const adminKey: string = created.body.data.apiKey;
    const device = await createAgent(app, 'DEV1', {}, adminKey);
    const other = await createAgent(app, 'DEV2', {}, adminKey);
    if (policy) {
      const set = await app.api('PUT', '/api/conflict-policies/contacts', { key: adminKey, body: policy });
      expect(set.status).toBe(200);
      expect(set.body.data).toEqual({ collection: 'contacts', ...policy });
    }
    return { adminKey, deviceKey: device.apiKey, otherDeviceKey: other.apiKey };
  };

  const createContact = async (t: Tenant, fields: Record<string, unknown> = {}) => {
    const res = await app.api('POST', '/api/contacts', { key: t.adminKey, body: { firstName: 'Cf', phonePrimary: uniquePhone(), ...fields } });
    expect(res.status).toBe(201);
    return res.body.data as Record<string, any> & { id: string; version: number };
  };
  /** An office edit through REST: its change time is its receipt time. */
  const officeEdit = async (t: Tenant, id: string, fields: Record<string, unknown>) => {
    const res = await app.api('PATCH', `/api/contacts/${id}`, { key: t.adminKey, body: fields });
    expect(res.status).toBe(200);
    return res.body.data as Record<string, any> & { version: number };
  };
  const push = async (t: Tenant, changes: unknown[], deviceId = 'phone-1', key = t.deviceKey) => {
    const res = await app.api('POST', '/api/sync', { key, body: { deviceId, changes } });
    expect(res.status).toBe(200);
    return res.body.data as { acknowledged: any[]; conflicts: any[] };
  };
  const record = async (t: Tenant, id: string) => {
    const res = await app.api('GET', `/api/contacts/${id}`, { key: t.adminKey });
    return res.status === 200 ? (res.body.data as Record<string, any>) : undefined;
  };
  const conflicts = async (t: Tenant, query = '') => {
    const res = await app.api('GET', `/api/conflicts${query}`, { key: t.adminKey });
    expect(res.status).toBe(200);
    return res.body.data as any[];
  };
  const latest = async (t: Tenant) => (await app.api('GET', '/api/sync/delta?version=0&limit=1', { key: t.adminKey })).body.data.latestVersion as number;
  /** What another device pulls after `checkpoint`. */
  const pulledBy = async (t: Tenant, checkpoint: number) => {
    const res = await app.api('GET', `/api/sync/delta?version=${checkpoint}&collections=contacts`, { key: t.otherDeviceKey, headers: { 'x-device-id': 'tablet-2' } });
    expect(res.status).toBe(200);
    return res.body.data.changes as { id: string; op: string; version: number; data: Record<string, any> }[];
  };
  const update = (id: string, baseVersion: number, data: Record<string, unknown>, at: string, extra: Record<string, unknown> = {}) => ({
    id,
    entityType: 'contacts',
    operation: 'update',
    baseVersion,
    timestamp: at,
    data,
    ...extra,
  });

  /**
   * The common story: the office edits `notes` (and `serverFields`) after the device's base
   * version; the device, offline, sets `notes` and `company` with timestamp `clientAt`.
   */
  const overlap = async (t: Tenant, clientAt: string, serverFields: Record<string, unknown> = {}) => {
    const c = await createContact(t, { notes: 'original' });
    const server = await officeEdit(t, c.id, { notes: 'server', ...serverFields });
    const change = update(c.id, c.version, { notes: 'client', company: 'ClientCo' }, clientAt);
    const answer = await push(t, [change]);
    return { c, server, change, ack: answer.acknowledged[0], report: answer.conflicts[0], reports: answer.conflicts, after: (await record(t, c.id))! };
  };

  /** The conflict's log entry, checked against the push answer's report. */
  const logged = async (t: Tenant, report: { conflictId: string }, status: 'logged' | 'pending') => {
    const entry = (await conflicts(t, `?status=${status}`)).find((c) => c.id === report.conflictId);
    expect(entry, `conflict ${report.conflictId} in ?status=${status}`).toBeDefined();
    return entry;
  };

  describe('each policy on an update that overlaps an office edit', () => {
    it('server_wins: the server keeps its state, the device receives it, the conflict is logged; untouched fields apply without conflict', async () => {
      const t = await tenantWith({ strategy: 'server_wins' });
      const { c, server, change, ack, report, after } = await overlap(t, ts(MINUTE));
      expect(ack).toMatchObject({ serverId: c.id, status: 'conflict', version: server.version });
      expect(report).toMatchObject({ localId: null, id: c.id, collection: 'contacts', strategy: 'server_wins', outcome: 'server_kept' });
      expect(report.serverRecord).toMatchObject({ id: c.id, notes: 'server', company: null, version: server.version });
      expect(after).toMatchObject({ notes: 'server', company: null, version: server.version });
      const entry = await logged(t, report, 'logged');
      expect(entry).toMatchObject({
        collection: 'contacts',
        recordId: c.id,
        deviceId: 'phone-1',
        strategy: 'server_wins',
        outcome: 'server_kept',
        status: 'logged',
        resolution: null,
      });
      expect(entry.clientChange).toMatchObject({ id: c.id, operation: 'update', baseVersion: c.version, data: change.data, timestamp: change.timestamp });
      expect(entry.serverBefore).toMatchObject({ id: c.id, notes: 'server', version: server.version });

      // A field the office did not touch since the base is no conflict, whatever the policy.
      const clean = await push(t, [update(c.id, c.version, { lastName: 'Untouched' }, ts())]);
      expect(clean.acknowledged[0]).toMatchObject({ status: 'applied', version: server.version + 1 });
      expect(clean.conflicts).toEqual([]);
      expect(await record(t, c.id)).toMatchObject({ lastName: 'Untouched', notes: 'server' });
      expect(await conflicts(t)).toHaveLength(1);
    });

    it("client_wins: the device's fields apply even with an older timestamp", async () => {
      const t = await tenantWith({ strategy: 'client_wins' });
      const { c, server, ack, report, after } = await overlap(t, ts(-10 * MINUTE));
      expect(ack).toMatchObject({ status: 'conflict', version: server.version + 1 });
      expect(report).toMatchObject({ id: c.id, strategy: 'client_wins', outcome: 'client_applied' });
      expect(report.serverRecord).toMatchObject({ notes: 'client', company: 'ClientCo', version: server.version + 1 });
      expect(after).toMatchObject({ notes: 'client', company: 'ClientCo', version: server.version + 1 });
      const entry = await logged(t, report, 'logged');
      expect(entry).toMatchObject({ strategy: 'client_wins', outcome: 'client_applied' });
      expect(entry.serverBefore).toMatchObject({ notes: 'server', company: null });
    });

    it('most_recent_wins: the later timestamp wins the overlapping field, either way', async () => {
      const t = await tenantWith({ strategy: 'most_recent_wins' });
      const older = await overlap(t, ts(-MINUTE));
      expect(older.report).toMatchObject({ strategy: 'most_recent_wins', outcome: 'merged' });
      // notes: the office's later edit stays; company (untouched by the office) is the device's.
      expect(older.after).toMatchObject({ notes: 'server', company: 'ClientCo', version: older.server.version + 1 });

      const newer = await overlap(t, ts(MINUTE));
      expect(newer.report).toMatchObject({ strategy: 'most_recent_wins', outcome: 'client_applied' });
      expect(newer.after).toMatchObject({ notes: 'client', company: 'ClientCo' });

      // Only the overlapping field, older: nothing changes, the server's state is reported.
      const c = await createContact(t);
      const server = await officeEdit(t, c.id, { notes: 'server only' });
      const lost = await push(t, [update(c.id, c.version, { notes: 'stale' }, ts(-MINUTE))]);
      expect(lost.acknowledged[0]).toMatchObject({ status: 'conflict', version: server.version });
      expect(lost.conflicts[0]).toMatchObject({ outcome: 'server_kept', serverRecord: { notes: 'server only' } });
      expect(await record(t, c.id)).toMatchObject({ notes: 'server only', version: server.version });
      for (const report of [older.report, newer.report, lost.conflicts[0]]) await logged(t, report, 'logged');
    });

    it('field_merge: non-overlapping fields merge and overlapping ones go by time', async () => {
      const t = await tenantWith({ strategy: 'field_merge' });
      const older = await overlap(t, ts(-MINUTE), { lastName: 'ServerLast' });
      expect(older.report).toMatchObject({ strategy: 'field_merge', outcome: 'merged' });
      expect(older.after).toMatchObject({ notes: 'server', lastName: 'ServerLast', company: 'ClientCo' });
      const newer = await overlap(t, ts(MINUTE), { lastName: 'ServerLast' });
      expect(newer.report).toMatchObject({ strategy: 'field_merge', outcome: 'client_applied' });
      expect(newer.after).toMatchObject({ notes: 'client', lastName: 'ServerLast', company: 'ClientCo' });
      expect((await logged(t, older.report, 'logged')).outcome).toBe('merged');
    });

    it('preserve_escalation: doNotCall never goes back to false, even from a newer change and without a conflict; a raise always applies', async () => {
      const t = await tenantWith({ strategy: 'preserve_escalation', monotonic: { doNotCall: [false, true] } });
      // Conflict: the office raised doNotCall; a newer device change lowers it and sets notes.
      const c = await createContact(t);
      const server = await officeEdit(t, c.id, { doNotCall: true, notes: 'server' });
      const answer = await push(t, [update(c.id, c.version, { doNotCall: false, notes: 'client' }, ts(MINUTE))]);
      expect(answer.conflicts[0]).toMatchObject({ strategy: 'preserve_escalation', outcome: 'merged' });
      let now = (await record(t, c.id))!;
      expect(now).toMatchObject({ doNotCall: true, notes: 'client', version: server.version + 1 });
      await logged(t, answer.conflicts[0], 'logged');

      // No conflict (the device is up to date, or sends no base): still never lowered, no new version.
      const clean = await push(t, [
        update(c.id, now.version, { doNotCall: false }, ts(2 * MINUTE)),
        { id: c.id, entityType: 'contacts', operation: 'update', timestamp: ts(3 * MINUTE), data: { doNotCall: false } },
      ]);
      expect(clean.conflicts).toEqual([]);
      expect(clean.acknowledged.map((a) => [a.success, a.version])).toEqual([
        [true, now.version],
        [true, now.version],
      ]);
      now = (await record(t, c.id))!;
      expect(now).toMatchObject({ doNotCall: true, version: server.version + 1 });

      // A raise from an older change beats a newer office edit that lowered it.
      const d = await createContact(t, { doNotCall: true });
      const lowered = await officeEdit(t, d.id, { doNotCall: false });
      const raise = await push(t, [update(d.id, d.version, { doNotCall: true }, ts(-10 * MINUTE))]);
      expect(raise.acknowledged[0]).toMatchObject({ status: 'conflict', version: lowered.version + 1 });
      expect(raise.conflicts[0]).toMatchObject({ outcome: 'client_applied' });
      expect((await record(t, d.id))!.doNotCall).toBe(true);
    });

    it('manual: nothing changes and the change waits in the review queue as pending_review', async () => {
      const t = await tenantWith({ strategy: 'manual' });
      const { c, server, change, ack, report, after } = await overlap(t, ts(MINUTE));
      expect(ack).toMatchObject({ status: 'conflict', version: server.version });
      expect(report).toMatchObject({ id: c.id, strategy: 'manual', outcome: 'pending_review', serverRecord: { notes: 'server', company: null } });
      expect(after).toMatchObject({ notes: 'server', company: null, version: server.version });
      const entry = await logged(t, report, 'pending');
      expect(entry).toMatchObject({ status: 'pending', outcome: 'pending_review', strategy: 'manual', recordId: c.id });
      expect(entry.clientChange.data).toEqual(change.data);
      expect((await conflicts(t, '?status=logged')).find((e) => e.id === report.conflictId)).toBeUndefined();
      // Even a change the office did not overlap goes through as usual.
      const clean = await push(t, [update(c.id, c.version, { lastName: 'Free' }, ts())]);
      expect(clean.acknowledged[0].status).toBe('applied');
    });

    it('reports the localId a device named the record by', async () => {
      const t = await tenantWith({ strategy: 'server_wins' });
      const created = await push(t, [{ localId: 'loc-1', entityType: 'contacts', operation: 'create', timestamp: ts(), data: { firstName: 'Loc', phonePrimary: uniquePhone() } }]);
      const { serverId, version } = created.acknowledged[0];
      await officeEdit(t, serverId, { notes: 'office' });
      const answer = await push(t, [{ localId: 'loc-1', entityType: 'contacts', operation: 'update', baseVersion: version, timestamp: ts(1), data: { notes: 'device' } }]);
      expect(answer.conflicts[0]).toMatchObject({ localId: 'loc-1', id: serverId, outcome: 'server_kept' });
    });
  });

  describe('clock skew', () => {
    it('clamps a timestamp more than 5 minutes ahead to the receipt time, so a later honest edit beats it', async () => {
      const t = await tenantWith({ strategy: 'most_recent_wins' });
      const c = await createContact(t);
      // A device with a clock a day ahead edits notes; it is recorded at its receipt time.
      const future = await push(t, [update(c.id, c.version, { notes: 'future clock' }, ts(24 * 60 * MINUTE))], 'bad-clock');
      expect(future.acknowledged[0].status).toBe('applied');
      const history = (await app.api('GET', `/api/contacts/${c.id}/history`, { key: t.adminKey })).body.data as { version: number; at: string }[];
      const entry = history.find((h) => h.version === future.acknowledged[0].version)!;
      expect(Math.abs(Date.parse(entry.at) - Date.now())).toBeLessThan(MINUTE);
      await sleep(5);
      // Another device, offline since before that, edits notes now: the later change wins.
      const honest = await push(t, [update(c.id, c.version, { notes: 'honest' }, ts())], 'good-clock');
      expect(honest.conflicts[0]).toMatchObject({ outcome: 'client_applied' });
      expect((await record(t, c.id))!.notes).toBe('honest');
    });

    it('keeps a timestamp less than 5 minutes ahead, which then beats an edit made now', async () => {
      const t = await tenantWith({ strategy: 'most_recent_wins' });
      const c = await createContact(t);
      await push(t, [update(c.id, c.version, { notes: 'slightly ahead' }, ts(4 * MINUTE))], 'fast-clock');
      const honest = await push(t, [update(c.id, c.version, { notes: 'now' }, ts())], 'good-clock');
      expect(honest.conflicts[0]).toMatchObject({ outcome: 'server_kept' });
      expect((await record(t, c.id))!.notes).toBe('slightly ahead');
    });

    it('judges a clamped change by its receipt time when an office edit came between', async () => {
      const t = await tenantWith({ strategy: 'most_recent_wins' });
      const c = await createContact(t);
      const future = await push(t, [update(c.id, c.version, { notes: 'future' }, ts(24 * 60 * MINUTE))], 'bad-clock');
      await sleep(5);
      // The office edits another field after that change arrived; a device offline since before
      // both sends a newer notes: it beats the clamped change and keeps the office's field.
      const office = await officeEdit(t, c.id, { company: 'Office' });
      const honest = await push(t, [update(c.id, c.version, { notes: 'later honest' }, ts())], 'good-clock');
      expect(honest.conflicts[0]).toMatchObject({ outcome: 'client_applied' });
      expect(await record(t, c.id)).toMatchObject({ notes: 'later honest', company: 'Office', version: office.version + 1 });
      expect(future.acknowledged[0].version).toBe(c.version + 1);
    });
  });

  describe('deletes', () => {
    it('a delete against an office edit since its base: applied under most_recent_wins, kept under server_wins, queued under manual', async () => {
      const mrw = await tenantWith({ strategy: 'most_recent_wins' });
      const a = await createContact(mrw);
      await officeEdit(mrw, a.id, { notes: 'edited' });
      const checkpoint = await latest(mrw);
      // Even with an older timestamp: a delete wins over concurrent edits.
      const del = await push(mrw, [{ id: a.id, entityType: 'contacts', operation: 'delete', baseVersion: a.version, timestamp: ts(-MINUTE) }]);
      expect(del.acknowledged[0]).toMatchObject({ status: 'conflict', version: checkpoint + 1 });
      expect(del.conflicts[0]).toMatchObject({ strategy: 'most_recent_wins', outcome: 'client_applied', serverRecord: { isDeleted: true } });
      expect(await record(mrw, a.id)).toBeUndefined();
      expect((await pulledBy(mrw, checkpoint)).map((c) => [c.id, c.op])).toEqual([[a.id, 'delete']]);
      expect((await logged(mrw, del.conflicts[0], 'logged')).clientChange.operation).toBe('delete');

      const sw = await tenantWith({ strategy: 'server_wins' });
      const b = await createContact(sw);
      const edited = await officeEdit(sw, b.id, { notes: 'edited' });
      const kept = await push(sw, [{ id: b.id, entityType: 'contacts', operation: 'delete', baseVersion: b.version, timestamp: ts(MINUTE) }]);
      expect(kept.conflicts[0]).toMatchObject({ outcome: 'server_kept', serverRecord: { isDeleted: false, notes: 'edited' } });
      expect(await record(sw, b.id)).toMatchObject({ notes: 'edited', version: edited.version });
      // Without an office edit since its base, a delete is no conflict under any policy.
      const plain = await push(sw, [{ id: b.id, entityType: 'contacts', operation: 'delete', baseVersion: edited.version, timestamp: ts() }]);
      expect(plain).toMatchObject({ conflicts: [], acknowledged: [{ status: 'applied' }] });
      expect(await record(sw, b.id)).toBeUndefined();

      const manual = await tenantWith({ strategy: 'manual' });
      const d = await createContact(manual);
      await officeEdit(manual, d.id, { notes: 'edited' });
      const queued = await push(manual, [{ id: d.id, entityType: 'contacts', operation: 'delete', baseVersion: d.version, timestamp: ts() }]);
      expect(queued.conflicts[0]).toMatchObject({ outcome: 'pending_review' });
      expect(await record(manual, d.id)).toMatchObject({ notes: 'edited' });
      // Resolved for the device: the delete applies as a new version every device pulls.
      const before = await latest(manual);
      const resolved = await app.api('POST', `/api/conflicts/${queued.conflicts[0].conflictId}/resolve`, { key: manual.adminKey, body: { choose: 'client' } });
      expect(resolved.status).toBe(200);
      expect(await record(manual, d.id)).toBeUndefined();
      expect((await pulledBy(manual, before)).map((c) => [c.id, c.op, c.version])).toEqual([[d.id, 'delete', before + 1]]);
    });

    it('an edit never resurrects a deleted record', async () => {
      const t = await tenantWith({ strategy: 'client_wins' });
      const c = await createContact(t);
      await push(t, [{ id: c.id, entityType: 'contacts', operation: 'delete', timestamp: ts() }], 'phone-a');
      const before = await latest(t);
      const late = await push(t, [update(c.id, c.version, { notes: 'too late' }, ts(MINUTE))], 'phone-b');
      expect(late.conflicts[0]).toMatchObject({ outcome: 'server_kept', serverRecord: { isDeleted: true } });
      expect(await record(t, c.id)).toBeUndefined();
      expect(await latest(t)).toBe(before);
    });
  });

  describe('the review queue', () => {
    let t: Tenant;
    let manager: { apiKey: string };
    let agent: { apiKey: string };
    /** A fresh pending conflict: the office set notes, the device sent notes and company. */
    const pending = async () => {
      const { c, report } = await overlap(t, ts(MINUTE));
      expect(report.outcome).toBe('pending_review');
      return { id: c.id as string, conflictId: report.conflictId as string };
    };
    const resolve = (conflictId: string, body: unknown, key = t.adminKey) => app.api('POST', `/api/conflicts/${conflictId}/resolve`, { key, body });
    const isPending = async (conflictId: string) => (await conflicts(t, '?status=pending')).some((c) => c.id === conflictId);

    beforeAll(async () => {
      t = await tenantWith({ strategy: 'manual' });
      manager = await createAgent(app, 'MGR', { role: 'manager' }, t.adminKey);
      agent = await createAgent(app, 'AGT', {}, t.adminKey);
    });

    it('resolves with the server, the client or merged data, each as a new version that another device pulls', async () => {
      for (const [choice, expected] of [
        [{ choose: 'server' }, { notes: 'server', company: null }],
        [{ choose: 'client' }, { notes: 'client', company: 'ClientCo' }],
        [{ choose: 'merged', data: { notes: 'merged', company: 'MergedCo' } }, { notes: 'merged', company: 'MergedCo' }],
      ] as const) {
        const { id, conflictId } = await pending();
        const checkpoint = await latest(t);
        const res = await resolve(conflictId, choice);
        expect(res.status, JSON.stringify(res.body)).toBe(200);
        expect(res.body.data).toMatchObject({ id: conflictId, status: 'resolved', resolution: choice.choose, outcome: 'pending_review' });
        expect(typeof res.body.data.resolverId).toBe('string');
        expect(Number.isNaN(Date.parse(res.body.data.resolvedAt))).toBe(false);
        expect(await record(t, id)).toMatchObject({ ...expected, version: checkpoint + 1 });
        const pulled = await pulledBy(t, checkpoint);
        expect(pulled.map((c) => [c.id, c.op, c.version])).toEqual([[id, 'upsert', checkpoint + 1]]);
        expect(pulled[0].data).toMatchObject(expected);
        expect(await isPending(conflictId)).toBe(false);
        expect((await conflicts(t, '?status=resolved')).some((c) => c.id === conflictId)).toBe(true);
        // Twice: 409, and nothing written.
        const again = await resolve(conflictId, { choose: 'client' });
        expect(again.status).toBe(409);
        expect(await latest(t)).toBe(checkpoint + 1);
      }
    });

    it('refuses merged without data or with invalid data with 400, and the conflict stays pending', async () => {
      const { id, conflictId } = await pending();
      const before = await latest(t);
      const other = await createContact(t);
      for (const body of [
        { choose: 'merged' },
        { choose: 'merged', data: {} },
        { choose: 'merged', data: { firstName: 42 } },
        { choose: 'merged', data: { shoeSize: 44 } },
        { choose: 'merged', data: { phonePrimary: 'not a phone' } },
        { choose: 'merged', data: { version: 1 } },
        { choose: 'maybe' },
        { choose: 'client', extra: true },
      ]) {
        const res = await resolve(conflictId, body);
        expect(res.status, JSON.stringify(body)).toBe(400);
        expect(res.body.success).toBe(false);
      }
      // Valid data the record cannot take (another contact's phone): refused, still pending.
      const dup = await resolve(conflictId, { choose: 'merged', data: { phonePrimary: other.phonePrimary } });
      expect(dup.status).toBe(409);
      expect(dup.body.error).toBe('DUPLICATE');
      expect(await isPending(conflictId)).toBe(true);
      expect(await latest(t)).toBe(before + 1);
      expect(await record(t, id)).toMatchObject({ notes: 'server' });
      // And it can still be resolved properly.
      expect((await resolve(conflictId, { choose: 'merged', data: { notes: 'fixed' } })).status).toBe(200);
      expect(await record(t, id)).toMatchObject({ notes: 'fixed' });
    });

    it('lets exactly one of two concurrent resolutions win', async () => {
      const { conflictId } = await pending();
      const before = await latest(t);
      const answers = await Promise.all([resolve(conflictId, { choose: 'server' }), resolve(conflictId, { choose: 'client' }, manager.apiKey)]);
      expect(answers.map((a) => a.status).sort()).toEqual([200, 409]);
      expect(await latest(t)).toBe(before + 1);
    });

    it('is for admins and managers only: an agent gets 403 and changes nothing', async () => {
      const { id, conflictId } = await pending();
      expect((await resolve(conflictId, { choose: 'client' }, agent.apiKey)).status).toBe(403);
      expect((await app.api('GET', '/api/conflicts', { key: agent.apiKey })).status).toBe(403);
      expect((await app.api('GET', '/api/conflict-policies', { key: agent.apiKey })).status).toBe(403);
      expect((await app.api('PUT', '/api/conflict-policies/contacts', { key: agent.apiKey, body: { strategy: 'client_wins' } })).status).toBe(403);
      expect(await isPending(conflictId)).toBe(true);
      expect(await record(t, id)).toMatchObject({ notes: 'server' });
      const policies = await app.api('GET', '/api/conflict-policies', { key: manager.apiKey });
      expect(policies.status).toBe(200);
      expect(policies.body.data).toEqual([{ collection: 'contacts', strategy: 'manual' }]);
      // A manager may resolve.
      const res = await resolve(conflictId, { choose: 'client' }, manager.apiKey);
      expect(res.status).toBe(200);
      expect(await record(t, id)).toMatchObject({ notes: 'client' });
    });

    it("answers 404 for another tenant's conflict and for ids that name nothing", async () => {
      const { conflictId } = await pending();
      const stranger = await tenantWith();
      const res = await app.api('POST', `/api/conflicts/${conflictId}/resolve`, { key: stranger.adminKey, body: { choose: 'client' } });
      expect(res.status).toBe(404);
      expect((await app.api('GET', '/api/conflicts', { key: stranger.adminKey })).body.data).toEqual([]);
      expect((await resolve(randomUUID(), { choose: 'client' })).status).toBe(404);
      expect([400, 404]).toContain((await resolve('not-a-uuid', { choose: 'client' })).status);
      expect(await isPending(conflictId)).toBe(true);
    });

    it('filters the log by status and collection', async () => {
      const { conflictId } = await pending();
      const all = await conflicts(t);
      expect(all.some((c) => c.id === conflictId)).toBe(true);
      expect((await conflicts(t, '?collection=contacts')).length).toBe(all.length);
      expect((await conflicts(t, '?collection=contact')).length).toBe(all.length);
      expect(await conflicts(t, '?collection=items')).toEqual([]);
      expect((await app.api('GET', '/api/conflicts?status=bogus', { key: t.adminKey })).status).toBe(400);
    });
  });

  describe('policy settings', () => {
    it('validates policies: 404 for an unknown collection, 400 for a bad strategy or monotonic map', async () => {
      const t = await tenantWith();
      const put = (collection: string, body: unknown, key = t.adminKey) => app.api('PUT', `/api/conflict-policies/${collection}`, { key, body });
      expect((await put('rockets', { strategy: 'server_wins' })).status).toBe(404);
      for (const body of [
        { strategy: 'loudest_wins' },
        {},
        { strategy: 'preserve_escalation' },
        { strategy: 'preserve_escalation', monotonic: {} },
        { strategy: 'preserve_escalation', monotonic: { shoeSize: [1, 2] } },
        { strategy: 'preserve_escalation', monotonic: { doNotCall: [true] } },
        { strategy: 'server_wins', monotonic: { doNotCall: [false, true] } },
        { strategy: 'server_wins', extra: 1 },
      ]) {
        const res = await put('contacts', body);
        expect(res.status, JSON.stringify(body)).toBe(400);
      }
      // Nothing was stored; the default applies.
      expect((await app.api('GET', '/api/conflict-policies', { key: t.adminKey })).body.data).toEqual([]);
      // The singular name works and answers the collection's name; a change applies to the next push.
      const ok = await put('contact', { strategy: 'server_wins' });
      expect(ok.status).toBe(200);
      expect(ok.body.data).toEqual({ collection: 'contacts', strategy: 'server_wins' });
      const c = await createContact(t);
      await officeEdit(t, c.id, { notes: 'server' });
      expect((await push(t, [update(c.id, c.version, { notes: 'client' }, ts(MINUTE))])).conflicts[0].outcome).toBe('server_kept');
      expect((await put('contacts', { strategy: 'client_wins' })).status).toBe(200);
      const c2 = await createContact(t);
      await officeEdit(t, c2.id, { notes: 'server' });
      expect((await push(t, [update(c2.id, c2.version, { notes: 'client' }, ts(-MINUTE))])).conflicts[0].outcome).toBe('client_applied');
      // Policies are per tenant: another tenant still has the default.
      const other = await tenantWith();
      const c3 = await createContact(other);
      await officeEdit(other, c3.id, { notes: 'server' });
      expect((await push(other, [update(c3.id, c3.version, { notes: 'client' }, ts(-MINUTE))])).conflicts[0]).toMatchObject({ strategy: 'most_recent_wins', outcome: 'server_kept' });
    });
  });

  describe('over sync:push', () => {
    it('reports a conflict in the socket answer as in the HTTP one', async () => {
      const t = await tenantWith({ strategy: 'manual' });
      const c = await createContact(t);
      await officeEdit(t, c.id, { notes: 'server' });
      const sock = await authedProbe(app.url, { apiKey: t.deviceKey, deviceId: 'sock-dev' });
      try {
        const answer = await sock.ack('sync:push', { deviceId: 'sock-dev', changes: [update(c.id, c.version, { notes: 'client' }, ts())] });
        expect(answer.success).toBe(true);
        expect(answer.data.acknowledged[0]).toMatchObject({ status: 'conflict', serverId: c.id });
        expect(answer.data.conflicts[0]).toMatchObject({ id: c.id, collection: 'contacts', strategy: 'manual', outcome: 'pending_review', serverRecord: { notes: 'server' } });
        const entry = await logged(t, answer.data.conflicts[0], 'pending');
        expect(entry.deviceId).toBe('sock-dev');
      } finally {
        closeAll(sock);
      }
    });
  });
});
