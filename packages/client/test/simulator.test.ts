import { describe, expect, it } from 'vitest';
import { checkRun, type CheckInput } from '../src/simulator/checker.js';
import { formatReport } from '../src/simulator/report.js';
import { runSimulation } from '../src/simulator/simulator.js';

describe('fleet simulator', () => {
  it('runs a small fleet through network loss, lost answers, restarts and a server kill with no violation', async () => {
    const report = await runSimulation({ devices: 6, seconds: 8, seed: 7, chaos: true, dropSockets: true, lossRate: 0.1, opsPerSecond: 2, restartRate: 0.1 });
    console.log(formatReport(report));
    expect(report.violations).toEqual([]);
    expect(report.server.kills.SIGKILL).toBeGreaterThanOrEqual(1);
    expect(Object.values(report.operations).reduce((s, n) => s + n, 0)).toBeGreaterThan(20);
    expect(report.faults.deviceRestarts).toBeGreaterThanOrEqual(1);
    expect(report.checks.devices).toBe(6);
    expect(report.checks.fieldsChecked).toBeGreaterThan(0);
  }, 120_000);
});

describe('the simulator checker', () => {
  const contact = (id: string, notes: string, extra: Record<string, unknown> = {}) => ({
    id,
    version: 3,
    isDeleted: false,
    firstName: 'A',
    notes,
    externalId: `tag-${id}`,
    createdAt: '2026-01-01T00:00:00.000Z',
    updatedAt: '2026-01-01T00:00:00.000Z',
    ...extra,
  });
  /** Two devices that agree with the server: c1 has two writes of notes, the later one won. */
  const healthy = (): CheckInput => ({
    server: { agent: [{ collection: 'contacts', id: 'c1', data: contact('c1', 'later') }, { collection: 'contacts', id: 'c2', data: contact('c2', 'x', { isDeleted: true }) }] },
    devices: ['d1', 'd2'].map((device) => ({ device, scope: 'agent', records: { contacts: [contact('c1', 'later')] }, pending: 0, deletedSeen: ['contacts:c2'], written: device === 'd1' ? ['k1'] : ['k2', 'k3'] })),
    acks: [
      { device: 'd1', changeId: 'k1', collection: 'contacts', id: 'c1', operation: 'update', timestamp: 10, data: { notes: 'earlier' }, success: true, status: 'applied', version: 2 },
      { device: 'd2', changeId: 'k2', collection: 'contacts', id: 'c1', operation: 'update', timestamp: 20, data: { notes: 'later' }, success: true, status: 'applied', version: 3 },
      { device: 'd2', changeId: 'k3', collection: 'contacts', id: 'c2', operation: 'delete', timestamp: 30, data: {}, success: true, status: 'applied', version: 4 },
    ],
    policies: { contacts: 'most_recent_wins' },
    checkedFields: { contacts: ['notes'] },
    tagFields: { contacts: 'externalId' },
  });

  it('passes a consistent run', () => {
    expect(checkRun(healthy()).violations).toEqual([]);
  });

  it("flags a device copy that differs from the server's", () => {
    const input = healthy();
    input.devices[1].records.contacts[0] = contact('c1', 'corrupted');
    const { violations } = checkRun(input);
    expect(violations).toEqual([expect.objectContaining({ kind: 'divergent-copy', device: 'd2', id: 'c1' })]);
    expect(violations[0].message).toContain('notes: "corrupted" vs "later"');
  });

  it('flags a missing record, an extra one, and unsynced changes', () => {
    const input = healthy();
    input.devices[0].records.contacts = [contact('c9', 'ghost')];
    input.devices[0].pending = 2;
    const kinds = checkRun(input).violations.map((v) => [v.kind, v.device, v.id]);
    expect(kinds).toEqual(expect.arrayContaining([['unsynced', 'd1', undefined], ['divergent-copy', 'd1', 'c1'], ['divergent-copy', 'd1', 'c9']]));
  });

  it('flags a local write that was never acknowledged', () => {
    const input = healthy();
    input.devices[0].written.push('k-vanished');
    expect(checkRun(input).violations).toEqual([expect.objectContaining({ kind: 'lost-change', device: 'd1' })]);
  });

  it('flags an acknowledged write the policy says should have won but is gone', () => {
    const input = healthy();
    input.acks[0].timestamp = 30; // the 'earlier' write is in fact the latest
    expect(checkRun(input).violations).toEqual([expect.objectContaining({ kind: 'lost-field', id: 'c1' })]);
  });

  it('flags a resurrected delete and a change applied twice', () => {
    const input = healthy();
    const alive = contact('c2', 'x');
    input.server.agent[1].data = alive;
    for (const d of input.devices) d.records.contacts.push(alive);
    input.server.agent.push({ collection: 'contacts', id: 'c3', data: contact('c3', 'y', { externalId: 'tag-c1' }) });
    for (const d of input.devices) d.records.contacts.push(contact('c3', 'y', { externalId: 'tag-c1' }));
    const kinds = new Set(checkRun(input).violations.map((v) => v.kind));
    expect(kinds).toEqual(new Set(['resurrected-delete', 'duplicate']));
  });

  it('flags a copy that differs only in updatedAt', () => {
    const input = healthy();
    input.devices[0].records.contacts[0] = contact('c1', 'later', { updatedAt: '2025-01-01T00:00:00.000Z' });
    expect(checkRun(input).violations).toEqual([expect.objectContaining({ kind: 'divergent-copy', device: 'd1', id: 'c1' })]);
  });
});
