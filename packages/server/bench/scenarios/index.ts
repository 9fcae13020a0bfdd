import type { Scenario } from '../lib/types.js';
import { chatCatchUp, chatGroup50 } from './chat.js';
import { connections } from './connections.js';
import { csvImport } from './csv-import.js';
import { eligibleCalls } from './eligible-calls.js';
import { exportThroughput } from './export-throughput.js';
import { fanout1000, fanout50 } from './fanout.js';
import { fanoutNginx } from './fanout-nginx.js';
import { idleMemory } from './idle-memory.js';
import { initialSync } from './initial-sync.js';
import { pullDelta } from './pull-delta.js';
import { pullThroughput } from './pull-throughput.js';
import { push } from './push.js';
import { pushThroughput } from './push-throughput.js';
import { pushNew } from './push-new.js';
import { pushTenants } from './push-tenants.js';
import { tenantIsolation } from './tenant-isolation.js';
import { upload } from './upload.js';

/** Every scenario of SPEC §12, in run order: the import first (it seeds the tenant), reads before writes. */
export const scenarios: Scenario[] = [csvImport, pullDelta, initialSync, pullThroughput, push, pushThroughput, pushTenants, pushNew, tenantIsolation, fanout50, fanout1000, chatGroup50, chatCatchUp, connections, fanoutNginx, eligibleCalls, exportThroughput, upload, idleMemory];
