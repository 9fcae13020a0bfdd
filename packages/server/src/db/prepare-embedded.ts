/**
 * Creates and migrates the embedded database of DATA_DIR, then exits: run by the server as a
 * short-lived child when DATA_DIR holds no database yet (`prepareEmbeddedInChild`). PostgreSQL's
 * initdb and the first migrations leave 50 to 150 MB of WASM code and memory behind in the
 * process that ran them, for good; a child gives all of it back when it exits. It loads the
 * configuration, the embedded database and the migrations only, not the server.
 */
import { loadConfig } from '../config/config.js';
import { migrate } from './migrate.js';
import { createPgliteDb } from './pglite.js';

const config = loadConfig();
const db = await createPgliteDb(config.dataDir, { sharedBuffersMb: config.pgliteSharedBuffersMb });
try {
  await migrate(db);
} finally {
  await db.close();
}
