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

/** The process logger and a way to finish its files before exiting. */
export interface Logs {
  logger: Logger;
  /** Ends the log files once every line logged so far is written (bounded by `timeoutMs`). */
  close(timeoutMs?: number): Promise<void>;
}

/**
 * JSON logs to stdout; with `logDir`, also `combined.log` and `error.log` rotated at 5 MB,
 * five files kept.
 */
export function createLogs(opts: { level: string; logDir?: string }): Logs {
  const options = { level: opts.level, redact: { paths: REDACT_PATHS, censor: '[redacted]' } };
  if (!opts.logDir) return { logger: pino(options), close: async () => {} };
  mkdirSync(opts.logDir, { recursive: true });
  const files = ['combined.log', 'error.log'].map((name) => {
    const stream = createStream(name, { path: opts.logDir, size: '5M', maxFiles: 5 });
    // A log file that cannot be written (disk full, permissions) must not take the server down.
    stream.on('error', (error) => process.stderr.write(`log file ${name}: ${error.message}\n`));
    return stream;
  });
  const streams: StreamEntry[] = [
    { level: opts.level as StreamEntry['level'], stream: process.stdout },
    { level: opts.level as StreamEntry['level'], stream: files[0] },
    { level: 'error', stream: files[1] },
  ];
  return {
    logger: pino(options, pino.multistream(streams)),
    // The files are written asynchronously: process.exit() right after a log call loses the line.
    async close(timeoutMs = 2000) {
      const ended = files.map((file) => new Promise<void>((resolve) => file.end(resolve)));
      await Promise.race([Promise.all(ended), new Promise((resolve) => setTimeout(resolve, timeoutMs).unref())]);
    },
  };
}

/** The logger of `createLogs`, for callers that never exit on their own. */
export function createLogger(opts: { level: string; logDir?: string }): Logger {
  return createLogs(opts).logger;
}
