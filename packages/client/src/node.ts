/**
 * `@fieldsync/client/node`: everything of the main entry plus the stores that need Node.js
 * (`FileStore`). Browsers and React Native import `@fieldsync/client`, which has no Node import.
 *
 * @example
 * import { createClient, FileStore } from '@fieldsync/client/node';
 *
 * const client = await createClient({ url, apiKey, deviceId: 'worker-1', store: new FileStore('./data/worker-1.jsonl') });
 */
export * from './index.js';
export { FileStore, type FileStoreOptions } from './file-store.js';
