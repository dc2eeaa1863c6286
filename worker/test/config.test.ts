import { ConfigError, DEFAULT_SHUTDOWN_TIMEOUT_MS, describeConfig, loadConfig } from '../src/config';
import { WORKER_DEFAULTS, WorkerEnv, WorkerHttp } from '../src/contract';

const URL = 'amqp://worker:s3cret@rabbitmq.messaging:5672/%2F';

function problemsOf(env: NodeJS.ProcessEnv): readonly string[] {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  test('applies the contract defaults; prefetch follows the batch size', () => {
    const config = loadConfig({ [WorkerEnv.RABBITMQ_URL]: URL, [WorkerEnv.WORKER_ID]: 'pod-1' });
    expect(config).toEqual({
      rabbitmqUrl: URL,
      jobQueue: WORKER_DEFAULTS.jobQueue,
      resultsExchange: WORKER_DEFAULTS.resultsExchange,
      deadLetterExchange: WORKER_DEFAULTS.deadLetterExchange,
      deadLetterQueue: WORKER_DEFAULTS.deadLetterQueue,
      deliveryLimit: WORKER_DEFAULTS.deliveryLimit,
      prefetch: WORKER_DEFAULTS.maxBatchSize,
      maxBatchSize: WORKER_DEFAULTS.maxBatchSize,
      maxBatchWaitMs: WORKER_DEFAULTS.maxBatchWaitMs,
      maxMessageBytes: WORKER_DEFAULTS.maxMessageBytes,
      modelPath: WORKER_DEFAULTS.modelPath,
      executionProvider: 'auto',
      httpPort: WorkerHttp.port,
      shutdownTimeoutMs: DEFAULT_SHUTDOWN_TIMEOUT_MS,
      workerId: 'pod-1',
      logLevel: 'info',
    });
    expect(loadConfig({ [WorkerEnv.RABBITMQ_URL]: URL, [WorkerEnv.MAX_BATCH_SIZE]: '32' }).prefetch).toBe(32);
    expect(loadConfig({ [WorkerEnv.RABBITMQ_URL]: URL, [WorkerEnv.MAX_BATCH_SIZE]: '32', [WorkerEnv.PREFETCH]: '4' }).prefetch).toBe(4);
  });

  test('reads every variable, and treats blank values as unset', () => {
    const config = loadConfig({
      [WorkerEnv.RABBITMQ_URL]: URL,
      [WorkerEnv.JOB_QUEUE]: 'ocr-jobs',
      [WorkerEnv.DELIVERY_LIMIT]: ' 5 ',
      [WorkerEnv.EXECUTION_PROVIDER]: 'cuda',
      [WorkerEnv.HTTP_PORT]: '9090',
      [WorkerEnv.SHUTDOWN_TIMEOUT_MS]: '0',
      [WorkerEnv.LOG_LEVEL]: 'debug',
      [WorkerEnv.MODEL_PATH]: '',
    });
    expect(config).toMatchObject({
      jobQueue: 'ocr-jobs',
      deliveryLimit: 5,
      executionProvider: 'cuda',
      httpPort: 9090,
      shutdownTimeoutMs: 0,
      logLevel: 'debug',
      modelPath: WORKER_DEFAULTS.modelPath,
    });
  });

  test('reports every problem at once, each naming the variable, what is allowed and what it got', () => {
    const problems = problemsOf({
      [WorkerEnv.PREFETCH]: '-1',
      [WorkerEnv.MAX_BATCH_SIZE]: '0',
      [WorkerEnv.HTTP_PORT]: '70000',
      [WorkerEnv.EXECUTION_PROVIDER]: 'gpu',
      [WorkerEnv.LOG_LEVEL]: 'verbose',
      [WorkerEnv.JOB_QUEUE]: 'amq.jobs',
    });
    expect(problems).toEqual([
      `${WorkerEnv.RABBITMQ_URL} is required: set it to the broker URL, e.g. amqp://user:pass@rabbitmq:5672/%2F (got unset)`,
      `${WorkerEnv.JOB_QUEUE} must not start with 'amq.' (reserved by the broker) (got "amq.jobs")`,
      `${WorkerEnv.PREFETCH} must be a whole number between 1 and 65535 (got "-1")`,
      `${WorkerEnv.MAX_BATCH_SIZE} must be at least 1 (got "0")`,
      `${WorkerEnv.EXECUTION_PROVIDER} must be one of auto, cuda, cpu (got "gpu")`,
      `${WorkerEnv.HTTP_PORT} must be at most 65535 (got "70000")`,
      `${WorkerEnv.LOG_LEVEL} must be one of fatal, error, warn, info, debug, trace (got "verbose")`,
    ]);
  });

  test('refuses names that would feed dead letters back into the job queue', () => {
    expect(problemsOf({ [WorkerEnv.RABBITMQ_URL]: URL, [WorkerEnv.JOB_QUEUE]: 'jobs', [WorkerEnv.DEAD_LETTER_QUEUE]: 'jobs' })).toEqual([
      `${WorkerEnv.JOB_QUEUE} and ${WorkerEnv.DEAD_LETTER_QUEUE} are both "jobs": dead-lettered jobs would be consumed again; give the dead-letter queue its own name`,
    ]);
  });

  test('never shows the broker password when the configuration is logged', () => {
    const described = describeConfig(loadConfig({ [WorkerEnv.RABBITMQ_URL]: URL }));
    expect(described.rabbitmqUrl).toBe('amqp://worker:***@rabbitmq.messaging:5672/%2F');
    expect(JSON.stringify(described)).not.toContain('s3cret');
  });
});
