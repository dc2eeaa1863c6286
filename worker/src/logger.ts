/**
 * Structured JSON logs, one event per line, on stdout (where the container runtime collects them).
 *
 * Every line carries `workerId`; every line about a job carries `jobId` (use {@link jobLogger}), so one job can be
 * followed across retries and replicas with a single query. Normal per-job events are logged at `debug`: at the
 * default `info` level a busy worker logs only what a person needs to act on.
 */
import pino, { Logger } from 'pino';
import type { LogLevel } from './config';

export type { Logger } from 'pino';

/** Creates the process's root logger. `destination` exists for tests that capture output. */
export function createLogger(options: { level: LogLevel; workerId: string }, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level: options.level,
      base: { workerId: options.workerId },
      // Label rather than pino's numeric level: log pipelines and people filter on `"level":"error"`.
      formatters: { level: (label) => ({ level: label }) },
      timestamp: pino.stdTimeFunctions.isoTime,
      // A broker URL in a logged object would leak the password.
      redact: { paths: ['rabbitmqUrl', '*.rabbitmqUrl'], censor: '***' },
    },
    destination ?? pino.destination({ sync: true }),
  );
}

/** A child logger whose every line names the job. */
export function jobLogger(logger: Logger, jobId: string, extra: Record<string, unknown> = {}): Logger {
  return logger.child({ jobId, ...extra });
}
