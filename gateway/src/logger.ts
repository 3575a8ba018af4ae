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
