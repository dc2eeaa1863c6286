/**
 * The worker's configuration, read once from the environment variables the constructs set.
 *
 * Every variable is named by {@link WorkerEnv} and defaulted from {@link WORKER_DEFAULTS}, so the manifests,
 * the docs and the worker cannot drift apart. All problems are collected and reported together: an operator
 * fixing a Deployment should not have to redeploy once per typo.
 */
import * as os from 'node:os';
import { z } from 'zod';
import {
  defaultPrefetch,
  EXECUTION_PROVIDERS,
  ExecutionProviderChoice,
  WORKER_DEFAULTS,
  WORKER_LIMITS,
  WorkerEnv,
  WorkerHttp,
} from './contract';

/** Everything the runtime needs to know, resolved and validated. */
export interface WorkerConfig {
  readonly rabbitmqUrl: string;
  readonly jobQueue: string;
  readonly resultsExchange: string;
  readonly deadLetterExchange: string;
  readonly deadLetterQueue: string;
  readonly deliveryLimit: number;
  readonly prefetch: number;
  readonly maxBatchSize: number;
  readonly maxBatchWaitMs: number;
  readonly maxMessageBytes: number;
  readonly modelPath: string;
  readonly executionProvider: ExecutionProviderChoice;
  readonly httpPort: number;
  readonly shutdownTimeoutMs: number;
  readonly workerId: string;
  readonly logLevel: LogLevel;
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * 25 s: Kubernetes' default termination grace period is 30 s; the worker must give up on its jobs and close
 * its connection before the kubelet's SIGKILL, or the broker only notices the dead socket on heartbeat timeout.
 */
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 25_000;

/** Raised when the environment cannot be turned into a {@link WorkerConfig}; lists every problem found. */
export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`invalid worker configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** An unset or blank variable falls back to its default. */
function unsetAsUndefined(value: unknown): unknown {
  return typeof value === 'string' && value.trim() === '' ? undefined : value;
}

/** A whole number in [min, max] from a decimal string; the message says what to write instead. */
function integer({ min, max }: { min: number; max: number }) {
  return z.preprocess(
    unsetAsUndefined,
    z
      .string()
      .trim()
      .regex(/^\d+$/, { message: `must be a whole number between ${min} and ${max}` })
      .transform(Number)
      .pipe(z.number().int().min(min, { message: `must be at least ${min}` }).max(max, { message: `must be at most ${max}` }))
      .optional(),
  );
}

function name() {
  return z.preprocess(
    unsetAsUndefined,
    z
      .string()
      .trim()
      // AMQP short strings are at most 255 bytes; RabbitMQ refuses longer queue and exchange names.
      .refine((s) => Buffer.byteLength(s) <= 255, { message: 'must be at most 255 bytes (an AMQP short string)' })
      .refine((s) => !s.startsWith('amq.'), { message: "must not start with 'amq.' (reserved by the broker)" })
      .optional(),
  );
}

const envSchema = z.object({
  [WorkerEnv.RABBITMQ_URL]: z.preprocess(
    unsetAsUndefined,
    z
      .string({ message: 'is required: set it to the broker URL, e.g. amqp://user:pass@rabbitmq:5672/%2F' })
      .trim()
      .regex(/^amqps?:\/\//, { message: 'must start with amqp:// or amqps://' }),
  ),
  [WorkerEnv.JOB_QUEUE]: name(),
  [WorkerEnv.RESULTS_EXCHANGE]: name(),
  [WorkerEnv.DEAD_LETTER_EXCHANGE]: name(),
  [WorkerEnv.DEAD_LETTER_QUEUE]: name(),
  [WorkerEnv.DELIVERY_LIMIT]: integer(WORKER_LIMITS.deliveryLimit),
  [WorkerEnv.PREFETCH]: integer(WORKER_LIMITS.prefetch),
  [WorkerEnv.MAX_BATCH_SIZE]: integer(WORKER_LIMITS.maxBatchSize),
  [WorkerEnv.MAX_BATCH_WAIT_MS]: integer(WORKER_LIMITS.maxBatchWaitMs),
  [WorkerEnv.MAX_MESSAGE_BYTES]: integer(WORKER_LIMITS.maxMessageBytes),
  [WorkerEnv.MODEL_PATH]: z.preprocess(unsetAsUndefined, z.string().trim().optional()),
  [WorkerEnv.EXECUTION_PROVIDER]: z.preprocess(
    unsetAsUndefined,
    z.enum(EXECUTION_PROVIDERS, { message: `must be one of ${EXECUTION_PROVIDERS.join(', ')}` }).optional(),
  ),
  [WorkerEnv.HTTP_PORT]: integer(WORKER_LIMITS.httpPort),
  [WorkerEnv.SHUTDOWN_TIMEOUT_MS]: integer(WORKER_LIMITS.shutdownTimeoutMs),
  [WorkerEnv.WORKER_ID]: z.preprocess(unsetAsUndefined, z.string().trim().optional()),
  [WorkerEnv.LOG_LEVEL]: z.preprocess(
    unsetAsUndefined,
    z.enum(LOG_LEVELS, { message: `must be one of ${LOG_LEVELS.join(', ')}` }).optional(),
  ),
});

/** Reads and validates the worker's configuration from `env` (the process environment by default). */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): WorkerConfig {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((issue) => {
        const variable = String(issue.path[0]);
        const got = env[variable] === undefined ? 'unset' : JSON.stringify(env[variable]);
        return `${variable} ${issue.message} (got ${got})`;
      }),
    );
  }

  const e = parsed.data;
  const maxBatchSize = e.MAX_BATCH_SIZE ?? WORKER_DEFAULTS.maxBatchSize;
  const config: WorkerConfig = {
    rabbitmqUrl: e.RABBITMQ_URL,
    jobQueue: e.JOB_QUEUE ?? WORKER_DEFAULTS.jobQueue,
    resultsExchange: e.RESULTS_EXCHANGE ?? WORKER_DEFAULTS.resultsExchange,
    deadLetterExchange: e.DEAD_LETTER_EXCHANGE ?? WORKER_DEFAULTS.deadLetterExchange,
    deadLetterQueue: e.DEAD_LETTER_QUEUE ?? WORKER_DEFAULTS.deadLetterQueue,
    deliveryLimit: e.DELIVERY_LIMIT ?? WORKER_DEFAULTS.deliveryLimit,
    prefetch: e.PREFETCH ?? defaultPrefetch(maxBatchSize),
    maxBatchSize,
    maxBatchWaitMs: e.MAX_BATCH_WAIT_MS ?? WORKER_DEFAULTS.maxBatchWaitMs,
    maxMessageBytes: e.MAX_MESSAGE_BYTES ?? WORKER_DEFAULTS.maxMessageBytes,
    modelPath: e.MODEL_PATH ?? WORKER_DEFAULTS.modelPath,
    executionProvider: e.EXECUTION_PROVIDER ?? WORKER_DEFAULTS.executionProvider,
    httpPort: e.HTTP_PORT ?? WorkerHttp.port,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS ?? DEFAULT_SHUTDOWN_TIMEOUT_MS,
    workerId: e.WORKER_ID ?? os.hostname(),
    logLevel: e.LOG_LEVEL ?? (WORKER_DEFAULTS.logLevel as LogLevel),
  };

  const problems = crossFieldProblems(config);
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

/** Combinations that are each valid alone but would misbehave together. */
function crossFieldProblems(c: WorkerConfig): string[] {
  const problems: string[] = [];
  if (c.jobQueue === c.deadLetterQueue) {
    problems.push(
      `${WorkerEnv.JOB_QUEUE} and ${WorkerEnv.DEAD_LETTER_QUEUE} are both ${JSON.stringify(c.jobQueue)}: ` +
        'dead-lettered jobs would be consumed again; give the dead-letter queue its own name',
    );
  }
  if (c.resultsExchange === c.deadLetterExchange) {
    problems.push(
      `${WorkerEnv.RESULTS_EXCHANGE} and ${WorkerEnv.DEAD_LETTER_EXCHANGE} are both ${JSON.stringify(c.resultsExchange)}: ` +
        'rejected jobs would be mixed with results; give each exchange its own name',
    );
  }
  return problems;
}

/** The configuration as it is safe to log: the broker password is masked. */
export function describeConfig(c: WorkerConfig): Record<string, unknown> {
  return { ...c, rabbitmqUrl: redactUrl(c.rabbitmqUrl) };
}

/** `amqp://user:secret@host` → `amqp://user:***@host`. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '<unparseable URL>';
  }
}
