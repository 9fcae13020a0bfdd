import type { Queryable } from '../../src/db/db.js';
import { contactsCollection } from '../../src/modules/contacts/contacts.collection.js';
import { categoriesCollection, itemsCollection, spacesCollection } from '../../src/modules/lists/lists.collection.js';
import { conversationsCollection, messagesCollection, usersCollection } from '../../src/modules/chat/chat.collection.js';
import { CollectionRegistry } from '../../src/sync/collections.js';
import { pullChanges } from '../../src/sync/pull.js';

/** The statement a delta pull runs, and how to fill in its parameters. */
export interface PullStatement {
  sql: string;
  params(since: number, limit: number): unknown[];
}

/**
 * The exact SQL the server runs for `GET /api/sync/delta` without `collections` (every
 * registered collection, as in app.ts), captured from `pullChanges` itself so the physical
 * limit always measures the server's current query. Fails loudly when the parameter layout
 * it relies on changed.
 */
export async function capturePullStatement(tenantId: string, userId: string): Promise<PullStatement> {
  const registry = new CollectionRegistry();
  registry.register(contactsCollection({ defaultRegion: 'US' }));
  registry.register(spacesCollection);
  registry.register(categoriesCollection);
  registry.register(itemsCollection);
  registry.register(usersCollection);
  registry.register(conversationsCollection);
  registry.register(messagesCollection);
  let captured: { sql: string; params: unknown[] } | undefined;
  const recorder: Queryable = {
    async query<T>(sql: string, params?: unknown[]) {
      captured = { sql, params: params ?? [] };
      return { rows: [{ latest: 0, found: 0, last_version: null, changes: '' }] as T[], rowCount: 1 };
    },
    async exec() {},
  };
  await pullChanges(recorder, [...registry.all()], { tenantId, userId, since: 123_456, limit: 789 });
  if (!captured || captured.params[0] !== tenantId || captured.params[1] !== 123_456 || captured.params[2] !== 790) {
    throw new Error('pullChanges changed its parameters ($1 tenant, $2 since, $3 limit + 1): update bench/lib/pull-sql.ts');
  }
  const { sql, params } = captured;
  return { sql, params: (since, limit) => [params[0], since, limit + 1, ...params.slice(3)] };
}
