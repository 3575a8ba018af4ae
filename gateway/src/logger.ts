import pino, { type Logger } from 'pino';
import type { LogLevel } from './config';

export type { Logger };

/** The root logger: JSON lines on stdout; secrets in connection strings and headers are redacted. */
export function createLogger(level: LogLevel, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'metrics-gateway' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: {
        paths: ['req.headers.authorization', 'req.headers.cookie', 'databaseUrl', '*.databaseUrl'],
        censor: '[redacted]',
      },
    },
    destination,
  );
}

/** The process's root logger and the way to write out what it still holds. */
export interface ProcessLogger {
  readonly logger: Logger;
  /** Writes every buffered line now, synchronously: call it right before process.exit(). */
  flushSync(): void;
}

/**
 * The root logger of the gateway process: its lines go to stdout asynchronously (pino's SonicBoom
 * destination), so that no request waits for a write(2); what is buffered at exit is written by
 * flushSync().
 */
export function createProcessLogger(level: LogLevel): ProcessLogger {
  const destination = pino.destination({ dest: 1, sync: false });
  return {
    logger: createLogger(level, destination),
    flushSync: () => {
      try {
        destination.flushSync();
      } catch {
        // Not open yet, or stdout is gone: nothing more can be written.
      }
    },
  };
}
