import type { CallSession, EligibleCall, OutreachSettings, Project, ProjectContact, TerminalSession } from '@fieldsync/protocol/outreach';
import type { Queryable } from '../../db/db.js';
import { CALL_SESSION_WIRE_SQL, PROJECT_CONTACT_WIRE_SQL, PROJECT_WIRE_SQL, TERMINAL_SESSION_WIRE_SQL } from './outreach.collection.js';

/** Whether terminal session `t` is in force now. */
const ACTIVE = '(t.expires_at IS NULL OR t.expires_at > now())';

/** The tenant's limits as one row (the defaults when it has none): parameter $1 is the tenant. */
const SETTINGS_SQL = `SELECT coalesce(max(call_daily_limit), 3) AS daily, coalesce(max(call_weekly_limit), 10) AS weekly,
  coalesce(max(call_cooldown_hours), 24) AS cooldown, max(rate_limit_per_minute) AS rate FROM outreach_settings WHERE tenant_id = $1`;

export async function findProject(db: Queryable, tenantId: string, projectId: string): Promise<Project | undefined> {
  const { rows } = await db.query<{ data: Project }>(
    `SELECT ${PROJECT_WIRE_SQL} AS data FROM projects r WHERE r.tenant_id = $1 AND r.project_id = $2 AND NOT r.is_deleted`,
    [tenantId, projectId],
  );
  return rows[0]?.data;
}

export async function listProjects(db: Queryable, tenantId: string, page: { offset: number; limit: number }): Promise<{ items: Project[]; total: number }> {
  const [items, count] = await Promise.all([
    db.query<{ data: Project }>(
      `SELECT ${PROJECT_WIRE_SQL} AS data FROM projects r WHERE r.tenant_id = $1 AND NOT r.is_deleted ORDER BY r.project_id LIMIT $2 OFFSET $3`,
      [tenantId, page.limit, page.offset],
    ),
    db.query<{ total: number }>('SELECT count(*)::int AS total FROM projects WHERE tenant_id = $1 AND NOT is_deleted', [tenantId]),
  ]);
  return { items: items.rows.map((r) => r.data), total: count.rows[0].total };
}

export async function findLink(db: Queryable, tenantId: string, projectId: string, contactId: string): Promise<ProjectContact | undefined> {
  const { rows } = await db.query<{ data: ProjectContact }>(
    `SELECT ${PROJECT_CONTACT_WIRE_SQL} AS data FROM project_contacts r WHERE r.tenant_id = $1 AND r.project_id = $2 AND r.contact_id = $3`,
    [tenantId, projectId, contactId],
  );
  return rows[0]?.data;
}

export async function listLinks(db: Queryable, tenantId: string, projectId: string): Promise<ProjectContact[]> {
  const { rows } = await db.query<{ data: ProjectContact }>(
    `SELECT ${PROJECT_CONTACT_WIRE_SQL} AS data FROM project_contacts r WHERE r.tenant_id = $1 AND r.project_id = $2 AND NOT r.is_deleted
      ORDER BY r.contact_id LIMIT 10000`,
    [tenantId, projectId],
  );
  return rows.map((r) => r.data);
}

export async function findCallSession(db: Queryable, tenantId: string, id: string): Promise<CallSession | undefined> {
  const { rows } = await db.query<{ data: CallSession }>(`SELECT ${CALL_SESSION_WIRE_SQL} AS data FROM call_sessions r WHERE r.tenant_id = $1 AND r.id = $2`, [
    tenantId,
    id,
  ]);
  return rows[0]?.data;
}

export async function listCallSessions(
  db: Queryable,
  tenantId: string,
  filter: { projectId?: string; contactId?: string; limit: number },
): Promise<CallSession[]> {
  const { rows } = await db.query<{ data: CallSession }>(
    `SELECT ${CALL_SESSION_WIRE_SQL} AS data FROM call_sessions r
      WHERE r.tenant_id = $1 AND ($2::text IS NULL OR r.project_id = $2) AND ($3::uuid IS NULL OR r.contact_id = $3)
      ORDER BY r.started_at DESC, r.id LIMIT $4`,
    [tenantId, filter.projectId ?? null, filter.contactId ?? null, filter.limit],
  );
  return rows.map((r) => r.data);
}

export async function findTerminal(db: Queryable, tenantId: string, id: string): Promise<TerminalSession | undefined> {
  const { rows } = await db.query<{ data: TerminalSession }>(
    `SELECT (${TERMINAL_SESSION_WIRE_SQL}::jsonb || jsonb_build_object('active', r.expires_at IS NULL OR r.expires_at > now())) AS data
       FROM terminal_sessions r WHERE r.tenant_id = $1 AND r.id = $2`,
    [tenantId, id],
  );
  return rows[0]?.data;
}

export async function listTerminals(
  db: Queryable,
  tenantId: string,
  filter: { active?: boolean; projectId?: string; contactId?: string; limit: number },
): Promise<TerminalSession[]> {
  const { rows } = await db.query<{ data: TerminalSession }>(
    `SELECT (${TERMINAL_SESSION_WIRE_SQL}::jsonb || jsonb_build_object('active', r.expires_at IS NULL OR r.expires_at > now())) AS data
       FROM terminal_sessions r
      WHERE r.tenant_id = $1 AND ($2::boolean IS NULL OR (r.expires_at IS NULL OR r.expires_at > now()) = $2)
        AND ($3::text IS NULL OR r.project_id = $3) AND ($4::uuid IS NULL OR r.contact_id = $4)
      ORDER BY r.created_at DESC, r.id LIMIT $5`,
    [tenantId, filter.active ?? null, filter.projectId ?? null, filter.contactId ?? null, filter.limit],
  );
  return rows.map((r) => r.data);
}

export async function getSettings(db: Queryable, tenantId: string): Promise<OutreachSettings> {
  const { rows } = await db.query<{ daily: number; weekly: number; cooldown: number; rate: number | null }>(SETTINGS_SQL, [tenantId]);
  return { callDailyLimit: rows[0].daily, callWeeklyLimit: rows[0].weekly, callCooldownHours: rows[0].cooldown, rateLimitPerMinute: rows[0].rate };
}

export async function saveSettings(db: Queryable, tenantId: string, s: OutreachSettings): Promise<void> {
  await db.query(
    `INSERT INTO outreach_settings (tenant_id, call_daily_limit, call_weekly_limit, call_cooldown_hours, rate_limit_per_minute) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (tenant_id) DO UPDATE SET call_daily_limit = $2, call_weekly_limit = $3, call_cooldown_hours = $4, rate_limit_per_minute = $5, updated_at = now()`,
    [tenantId, s.callDailyLimit, s.callWeeklyLimit, s.callCooldownHours, s.rateLimitPerMinute],
  );
}

/** The live contact a dedupe key names (the oldest when several do). */
export async function matchContact(db: Queryable, tenantId: string, by: 'externalId' | 'phone' | 'email', value: string): Promise<string | undefined> {
  const where = { externalId: 'r.external_id = $2', phone: 'r.phone_primary = $2', email: 'lower(r.email) = lower($2)' }[by];
  const { rows } = await db.query<{ id: string }>(
    `SELECT r.id FROM contacts r WHERE r.tenant_id = $1 AND ${where} AND NOT r.is_deleted ORDER BY r.created_at, r.id LIMIT 1`,
    [tenantId, value],
  );
  return rows[0]?.id;
}

/**
 * Callable pairs, in one statement (SPEC §9): a live link of a live, unsuppressed project out of
 * its cooldown and of a live contact who may be called, with no terminal session in force for
 * the tenant, the project, the pair or the contact, and fewer calls of the pair than the
 * tenant's limits in the rolling day and week. Every test is an index probe per pair
 * (terminal sessions by scope, calls by pair and start time, counted only up to the limit);
 * the walk goes project by project, in order, and stops at `limit`.
 */
const eligibleCallsSql = (oneProject: boolean) => `
WITH s AS (${SETTINGS_SQL}),
g AS (SELECT EXISTS (SELECT 1 FROM terminal_sessions t WHERE t.tenant_id = $1 AND t.scope = 'global' AND ${ACTIVE}) AS blocked)
SELECT p.project_id AS "projectId", p.name AS "projectName", c.id AS "contactId",
       json_build_object('firstName', c.first_name, 'lastName', c.last_name, 'phonePrimary', c.phone_primary,
                         'email', c.email, 'preferredChannel', c.preferred_channel) AS contact
  FROM s CROSS JOIN g
  JOIN projects p ON p.tenant_id = $1
  JOIN project_contacts pc ON pc.tenant_id = $1 AND pc.project_id = p.project_id
  JOIN contacts c ON c.id = pc.contact_id
 WHERE NOT g.blocked
   ${oneProject ? 'AND p.project_id = $3::text' : ''}
   AND NOT p.is_deleted AND NOT p.call_suppressed
   AND (p.next_call_eligible_at IS NULL OR p.next_call_eligible_at <= now())
   AND NOT EXISTS (SELECT 1 FROM terminal_sessions t
                    WHERE t.tenant_id = $1 AND t.scope = 'project' AND t.project_id = p.project_id AND t.contact_id IS NULL AND ${ACTIVE})
   AND NOT pc.is_deleted AND NOT pc.suppress_for_project
   AND c.tenant_id = $1 AND NOT c.is_deleted AND NOT c.do_not_call
   AND NOT EXISTS (SELECT 1 FROM terminal_sessions t
                    WHERE t.tenant_id = $1 AND t.scope = 'project' AND t.project_id = p.project_id AND t.contact_id = c.id AND ${ACTIVE})
   AND NOT EXISTS (SELECT 1 FROM terminal_sessions t WHERE t.tenant_id = $1 AND t.scope = 'contact' AND t.contact_id = c.id AND ${ACTIVE})
   AND (SELECT count(*) FROM (SELECT 1 FROM call_sessions cs WHERE cs.tenant_id = $1 AND cs.project_id = p.project_id AND cs.contact_id = c.id
          AND cs.started_at > now() - interval '24 hours' LIMIT s.daily) AS day) < s.daily
   AND (SELECT count(*) FROM (SELECT 1 FROM call_sessions cs WHERE cs.tenant_id = $1 AND cs.project_id = p.project_id AND cs.contact_id = c.id
          AND cs.started_at > now() - interval '7 days' LIMIT s.weekly) AS week) < s.weekly
 ORDER BY p.project_id, pc.contact_id
 LIMIT $2`;

/**
 * The eligible-calls statements: across the tenant ($1 tenant, $2 limit) and of one project
 * ($3 its projectId). Two texts rather than an optional filter, so each is prepared once per
 * connection with a plan of its own.
 */
export const ELIGIBLE_CALLS_SQL = { tenant: eligibleCallsSql(false), project: eligibleCallsSql(true) };

export async function eligibleCalls(db: Queryable, tenantId: string, projectId: string | undefined, limit: number): Promise<EligibleCall[]> {
  const { rows } =
    projectId === undefined
      ? await db.query<EligibleCall>(ELIGIBLE_CALLS_SQL.tenant, [tenantId, limit], { prepare: 'eligible-calls' })
      : await db.query<EligibleCall>(ELIGIBLE_CALLS_SQL.project, [tenantId, limit, projectId], { prepare: 'eligible-calls-project' });
  return rows;
}

export interface PairFacts {
  projectSuppressed: boolean;
  doNotCall: boolean;
  suppressedForProject: boolean;
  terminalProject: boolean;
  terminalContact: boolean;
  terminalGlobal: boolean;
  cooldownUntil: string | null;
  dayCalls: number;
  weekCalls: number;
  daily: number;
  weekly: number;
}

/** Every fact eligibility rules on for one pair, in one statement; undefined when the project or contact is not live. */
export async function pairFacts(db: Queryable, tenantId: string, projectId: string, contactId: string): Promise<PairFacts | undefined> {
  const { rows } = await db.query<PairFacts>(
    `WITH s AS (${SETTINGS_SQL})
     SELECT p.call_suppressed AS "projectSuppressed", c.do_not_call AS "doNotCall",
            coalesce(pc.suppress_for_project, false) AS "suppressedForProject",
            EXISTS (SELECT 1 FROM terminal_sessions t WHERE t.tenant_id = $1 AND t.scope = 'project' AND t.project_id = p.project_id
                      AND (t.contact_id IS NULL OR t.contact_id = c.id) AND ${ACTIVE}) AS "terminalProject",
            EXISTS (SELECT 1 FROM terminal_sessions t WHERE t.tenant_id = $1 AND t.scope = 'contact' AND t.contact_id = c.id AND ${ACTIVE}) AS "terminalContact",
            EXISTS (SELECT 1 FROM terminal_sessions t WHERE t.tenant_id = $1 AND t.scope = 'global' AND ${ACTIVE}) AS "terminalGlobal",
            CASE WHEN p.next_call_eligible_at > now()
                 THEN to_char(p.next_call_eligible_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') END AS "cooldownUntil",
            (SELECT count(*)::int FROM call_sessions cs WHERE cs.tenant_id = $1 AND cs.project_id = p.project_id AND cs.contact_id = c.id
               AND cs.started_at > now() - interval '24 hours') AS "dayCalls",
            (SELECT count(*)::int FROM call_sessions cs WHERE cs.tenant_id = $1 AND cs.project_id = p.project_id AND cs.contact_id = c.id
               AND cs.started_at > now() - interval '7 days') AS "weekCalls",
            s.daily, s.weekly
       FROM s
       JOIN projects p ON p.tenant_id = $1 AND p.project_id = $2 AND NOT p.is_deleted
       JOIN contacts c ON c.tenant_id = $1 AND c.id = $3 AND NOT c.is_deleted
       LEFT JOIN project_contacts pc ON pc.tenant_id = $1 AND pc.project_id = p.project_id AND pc.contact_id = c.id AND NOT pc.is_deleted`,
    [tenantId, projectId, contactId],
  );
  return rows[0];
}

/** Whether the tenant has this live contact. */
export async function contactExists(db: Queryable, tenantId: string, id: string): Promise<boolean> {
  const { rows } = await db.query('SELECT 1 FROM contacts WHERE tenant_id = $1 AND id = $2 AND NOT is_deleted', [tenantId, id]);
  return rows.length > 0;
}
