import { startTestApp, createAgent, type TestApp } from '../../server/test/helpers/test-app.js';
import { createClient, type ClientOptions, type FieldsyncClient } from '../src/index.js';

export { startTestApp, createAgent, type TestApp };

let seq = 0;
/** A unique, valid US number in E.164. */
export function phone(): string {
  seq++;
  return `+1415${String(2000000 + ((Date.now() % 100000) * 50 + seq) % 7999999).padStart(7, '0')}`;
}

/** A client of `app` as agent `apiKey`, with fast retries so tests stay short. */
export async function device(app: TestApp, apiKey: string, deviceId: string, opts: Partial<ClientOptions> = {}): Promise<FieldsyncClient> {
  return createClient({ url: app.url, apiKey, deviceId, backoff: { baseMs: 20, maxMs: 200, maxAttempts: 6 }, ...opts });
}

/** Resolves when `predicate` holds (polled), or fails after `timeoutMs`. */
export async function until(predicate: () => boolean | Promise<boolean>, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
