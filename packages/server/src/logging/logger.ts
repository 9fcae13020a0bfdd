import { mkdirSync } from 'node:fs';
import { pino, type Logger, type StreamEntry } from 'pino';
import { createStream } from 'rotating-file-stream';

/** Never logged: credentials in headers, bodies and socket handshakes. */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'req.headers.cookie',
  '*.password',
  '*.apiKey',
  '*.token',
  '*.accessToken',
  '*.refreshToken',
  'auth.apiKey',
  'auth.token',
];

/**
 * JSON logs to stdout; with `logDir`, also `combined.log` and `error.log` rotated at 5 MB,
 * five files kept.
 */
export function createLogger(opts: { level: string; logDir?: string }): Logger {
  const options = { level: opts.level, redact: { paths: REDACT_PATHS, censor: '[redacted]' } };
  if (!opts.logDir) return pino(options);
  mkdirSync(opts.logDir, { recursive: true });
  const rotating = (name: string) => createStream(name, { path: opts.logDir, size: '5M', maxFiles: 5 });
  const streams: StreamEntry[] = [
    { level: opts.level as StreamEntry['level'], stream: process.stdout },
    { level: opts.level as StreamEntry['level'], stream: rotating('combined.log') },
    { level: 'error', stream: rotating('error.log') },
  ];
  return pino(options, pino.multistream(streams));
}
