import { parseRetryAfter } from './backoff.js';
import { FieldsyncError } from './errors.js';

/** How the device proves who it is: an agent's API key, or a user's access token. */
export type Credentials =
  | { apiKey: string; token?: undefined }
  | { token: string | (() => string | Promise<string>); apiKey?: undefined };

/** Device facts sent with every request (headers) and in the socket heartbeat. */
export interface DeviceInfo {
  platform?: string;
  appVersion?: string;
  osVersion?: string;
  networkType?: string;
  /** 0..100 (heartbeat only). */
  battery?: number;
}

/** The `fetch` the SDK uses: the global one, or any compatible function (tests, proxies). */
export type FetchLike = (input: string, init: RequestInit) => Promise<Response>;

export interface HttpOptions {
  url: string;
  credentials: Credentials;
  deviceId: string;
  fetch?: FetchLike;
  deviceInfo?: DeviceInfo;
  /** Abandon a request with no answer after this long (30 000 ms); it counts as a network error. */
  requestTimeoutMs?: number;
}

/** The HTTP half of the SDK: authenticated JSON requests that answer `data` or throw `FieldsyncError`. */
export class HttpTransport {
  private readonly base: string;
  private readonly fetchFn: FetchLike;

  constructor(private readonly opts: HttpOptions) {
    this.base = opts.url.replace(/\/+$/, '');
    this.fetchFn = opts.fetch ?? ((input, init) => globalThis.fetch(input, init));
  }

  /** Headers that authenticate the device and describe it. */
  async headers(): Promise<Record<string, string>> {
    const { credentials, deviceId, deviceInfo } = this.opts;
    const headers: Record<string, string> = { 'x-device-id': deviceId };
    if (credentials.apiKey !== undefined) headers['x-api-key'] = credentials.apiKey;
    else headers.authorization = `Bearer ${typeof credentials.token === 'function' ? await credentials.token() : credentials.token}`;
    if (deviceInfo?.platform) headers['x-platform'] = deviceInfo.platform;
    if (deviceInfo?.appVersion) headers['x-app-version'] = deviceInfo.appVersion;
    if (deviceInfo?.osVersion) headers['x-os-version'] = deviceInfo.osVersion;
    if (deviceInfo?.networkType) headers['x-network-type'] = deviceInfo.networkType;
    return headers;
  }

  /** Sends one request; answers the envelope's `data`, throws `FieldsyncError` for anything else. */
  async request<T>(
    method: 'GET' | 'POST',
    path: string,
    opts: { body?: unknown; headers?: Record<string, string>; signal?: AbortSignal } = {},
  ): Promise<T> {
    const headers = { ...(await this.headers()), ...opts.headers };
    let body: string | undefined;
    if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers['content-type'] = 'application/json';
    }
    const timeout = AbortSignal.timeout(this.opts.requestTimeoutMs ?? 30_000);
    const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
    let res: Response;
    let text: string;
    try {
      res = await this.fetchFn(this.base + path, { method, headers, body, signal });
      text = await res.text();
    } catch (cause) {
      if (opts.signal?.aborted) throw new FieldsyncError('CLOSED', 'The client was closed', { cause });
      if (timeout.aborted) throw new FieldsyncError('TIMEOUT', `${method} ${path}: no answer within the request timeout`, { cause });
      throw new FieldsyncError('NETWORK', `${method} ${path}: ${(cause as Error)?.message ?? 'network error'}`, { cause });
    }
    let parsed: { success?: boolean; data?: T; error?: string; message?: string; details?: unknown[] } | undefined;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    if (res.ok && parsed?.success === true) return parsed.data as T;
    const retryAfterMs = parseRetryAfter(res.headers.get('retry-after'));
    // Only the Fieldsync envelope names an error code; anything else (a proxy page, a bare
    // framework answer) is known by its status alone.
    if (!parsed || parsed.success !== false || typeof parsed.error !== 'string') {
      throw new FieldsyncError(res.ok ? 'BAD_RESPONSE' : `HTTP_${res.status}`, `${method} ${path}: HTTP ${res.status} without a Fieldsync envelope`, {
        status: res.ok ? undefined : res.status,
        retryAfterMs,
      });
    }
    throw new FieldsyncError(parsed.error, parsed.message ?? parsed.error, { status: res.status, retryAfterMs, details: parsed.details });
  }
}
