/**
 * The worker process: configuration, model, HTTP probes and metrics, then the consumer loop, and a shutdown
 * that loses nothing.
 *
 * Exit codes: 0 after a clean shutdown; 1 when the worker cannot start (bad configuration, model, broker) or
 * must give up (topology mismatch, broker gone for good, shutdown deadline or a second signal, which leave
 * unfinished jobs unacked for the broker to redeliver).
 */
import { ConfigError, describeConfig, loadConfig, WorkerConfig } from './config';
import { WorkerEnv } from './contract';
import { JobConsumer, JobContext, JobHandler } from './consumer';
import { startHealthServer, HealthServer } from './http';
import { InferenceEngine } from './inference';
import { createLogger, Logger } from './logger';
import { Job, jobCompleted, jobFailed, parseJob } from './messages';
import { WorkerMetricsRegistry } from './metrics';
import { LoadedModel, loadModel } from './model';

async function main(): Promise<void> {
  let config: WorkerConfig;
  try {
    config = loadConfig();
  } catch (err) {
    // No logger yet (its level is configuration too): one JSON line by hand, in the logger's shape.
    const message = err instanceof ConfigError ? err.message : String(err);
    process.stderr.write(`${JSON.stringify({ level: 'fatal', time: new Date().toISOString(), msg: message })}\n`);
    process.exit(1);
  }

  const logger = createLogger({ level: config.logLevel, workerId: config.workerId });
  logger.info({ config: describeConfig(config) }, 'starting');
  // A bug that escapes every handler still ends as one JSON line, and as a non-zero exit the kubelet restarts;
  // unacked jobs go back to the queue with the dead connection.
  process.on('uncaughtException', (err) => fail(logger, `uncaught exception: ${err.message}`, err));
  process.on('unhandledRejection', (reason) => {
    fail(logger, `unhandled rejection: ${String((reason as Error)?.message ?? reason)}`, reason);
  });

  if (config.prefetch < config.maxBatchSize) {
    logger.warn(
      { prefetch: config.prefetch, maxBatchSize: config.maxBatchSize },
      `${WorkerEnv.PREFETCH} is below ${WorkerEnv.MAX_BATCH_SIZE}: batches can never fill`,
    );
  }

  // Until the consumer exists there is no job to finish: a signal during a long model load simply ends the process.
  const exitDuringStartup = (signal: NodeJS.Signals) => {
    logger.info({ signal }, 'signal during start-up; no jobs taken yet, exiting');
    process.exit(0);
  };
  process.on('SIGTERM', exitDuringStartup);
  process.on('SIGINT', exitDuringStartup);

  const metrics = new WorkerMetricsRegistry({ maxBatchSize: config.maxBatchSize });
  const state: { model?: LoadedModel; consumer?: JobConsumer<Job>; shuttingDown: boolean } = { shuttingDown: false };

  // Probes answer from the first moment: liveness while a large model loads, readiness false until consuming.
  const http = await startHealthServer({
    port: config.httpPort,
    registry: metrics.registry,
    logger,
    readiness: () => {
      const checks = {
        modelLoaded: state.model !== undefined,
        brokerConsuming: state.consumer?.consuming ?? false,
        notShuttingDown: !state.shuttingDown,
      };
      return { ready: Object.values(checks).every(Boolean), checks };
    },
  }).catch((err: Error) => fail(logger, `cannot listen on ${WorkerEnv.HTTP_PORT}=${config.httpPort}: ${err.message}`));

  try {
    state.model = await loadModel(config.modelPath, config.executionProvider);
  } catch (err) {
    fail(logger, (err as Error).message, err);
  }
  const model = state.model!;
  metrics.setProvider(model.provider);
  logger.info(
    {
      modelPath: model.path,
      provider: model.provider,
      providerReason: model.providerReason,
      inputs: [...model.inputs.values()].map((s) => ({ name: s.name, datatype: s.datatype, shape: s.shape })),
      batchable: model.batchable,
    },
    `model loaded; running on ${model.provider}`,
  );

  const engine = new InferenceEngine(model, {
    maxBatchSize: config.maxBatchSize,
    maxBatchWaitMs: config.maxBatchWaitMs,
    onModelCall: (batchSize: number, seconds: number) => metrics.modelCall(batchSize, seconds),
  });

  const consumer = new JobConsumer<Job>({
    config,
    logger,
    metrics,
    handler: jobHandler(config, engine),
    onFatal: (err) => {
      logger.fatal({ err }, err.message);
      void exitAfter(http, 1);
    },
  });
  state.consumer = consumer;

  process.off('SIGTERM', exitDuringStartup);
  process.off('SIGINT', exitDuringStartup);
  installSignalHandlers(config, logger, state, consumer, http, engine);

  try {
    await consumer.start();
  } catch (err) {
    // A signal during start-up closes the connection attempt on purpose; the shutdown path exits.
    if (!state.shuttingDown) fail(logger, (err as Error).message, err);
  }
}

/** Adapts the message schema and the inference engine to what the consumer needs. */
function jobHandler(config: WorkerConfig, engine: InferenceEngine): JobHandler<Job> {
  return {
    // The message is checked here; the job against the model once, by engine.run (a JobRejection there is
    // answered and dead-lettered like one from parsing).
    parse: (content, properties) => parseJob(content, properties, { maxMessageBytes: config.maxMessageBytes }),
    jobId: (job) => job.jobId,
    run: async (job: Job, context: JobContext) => {
      const result = await engine.run(job);
      return jobCompleted(job, result, context.workerId, Date.now() - context.receivedAt);
    },
    failed: (jobId, error, context, options) => jobFailed(jobId, error, context.workerId, options),
    withdrawWaiting: (keep) => engine.withdrawWaiting((job) => keep(job.jobId)),
  };
}

/**
 * SIGTERM (the kubelet) or SIGINT (a terminal): stop taking jobs, finish the ones in flight, exit 0. A second
 * signal, or the deadline, exits at once; the broker redelivers what was left unacked.
 */
function installSignalHandlers(
  config: WorkerConfig,
  logger: Logger,
  state: { shuttingDown: boolean },
  consumer: JobConsumer<Job>,
  http: HealthServer,
  engine: InferenceEngine,
): void {
  const onSignal = (signal: NodeJS.Signals) => {
    if (state.shuttingDown) {
      logger.warn({ signal, inFlight: consumer.inFlightCount }, 'second signal: exiting now; unfinished jobs will be redelivered');
      process.exit(1);
    }
    state.shuttingDown = true;
    logger.info(
      { signal, inFlight: consumer.inFlightCount, timeoutMs: config.shutdownTimeoutMs },
      'shutting down: finishing started jobs, handing back the rest',
    );

    void consumer.stop(config.shutdownTimeoutMs).then(async ({ unfinished }) => {
      if (unfinished.length > 0) {
        logger.error(
          { unfinished, timeoutMs: config.shutdownTimeoutMs },
          `${WorkerEnv.SHUTDOWN_TIMEOUT_MS} passed with jobs unfinished; they will be redelivered`,
        );
        await exitAfter(http, 1);
      }
      // Nothing is left to run once every job is settled; this frees the onnxruntime session.
      await engine.close().catch(() => undefined);
      logger.info('shut down cleanly');
      await exitAfter(http, 0);
    });
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

async function exitAfter(http: HealthServer, code: number): Promise<never> {
  await http.close().catch(() => undefined);
  process.exit(code);
}

function fail(logger: Logger, message: string, err?: unknown): never {
  logger.fatal({ err }, message);
  process.exit(1);
}

void main();
