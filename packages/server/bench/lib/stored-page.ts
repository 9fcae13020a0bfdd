/**
 * The pull limit's statement, shared by the limit (`load/pg-load.ts`, straight through `pg`)
 * and the deployment-shape reference (`load/http-reference.ts`, the same statement behind a
 * bare `node:http` server): both read the same stored bytes the same way.
 *
 * A page read from stored wire text: `bench_limit_wire` (built by `storeWireCopy` in
 * scenarios/common.ts) holds each change object as the pull sends it, so the limit is an index
 * range scan and a concatenation (the bytes sent), shaped as the server's pull row (`pageOf`
 * in src/sync/pull.ts reads it).
 */
export const STORED_PAGE_SQL = `
  SELECT tv.current_version AS latest, p.found, p.last_version, p.changes
    FROM tenant_versions tv
    LEFT JOIN LATERAL (
      SELECT count(*)::int AS found, max(c.version) FILTER (WHERE c.n < $3) AS last_version,
             coalesce(string_agg(c.change, ',' ORDER BY c.version) FILTER (WHERE c.n < $3), '') AS changes
        FROM (SELECT w.version, w.change, row_number() OVER (ORDER BY w.version) AS n
                FROM bench_limit_wire w WHERE w.tenant_id = $1 AND w.version > $2 ORDER BY w.version LIMIT $3) c
    ) p ON true
   WHERE tv.tenant_id = $1`;

/** The name both prepare `STORED_PAGE_SQL` under (once per connection). */
export const STORED_PAGE_NAME = 'bench-pull';

/** The pull limit's statement for a tenant: the stored bytes by a range scan (see STORED_PAGE_SQL); one row more than `limit` says whether there is more. */
export const storedPage = (tenantId: string) => ({
  name: STORED_PAGE_NAME,
  sql: STORED_PAGE_SQL,
  params: (since: number, limit: number) => [tenantId, since, limit + 1],
});
