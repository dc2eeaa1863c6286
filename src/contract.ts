/**
 * The contract between the manifests this library synthesizes and the worker that runs inside them.
 *
 * Environment variable names, the HTTP port and its paths, metric names, message type names and the
 * default image live here and nowhere else. The constructs import this module; the worker package
 * compiles this same file into its build (see worker/src/contract.ts). Keep it free of dependencies.
 */

/** The worker image the constructs run unless told otherwise. Built from worker/Dockerfile. */
export const WORKER_IMAGE = {
  repository: 'ghcr.io/cdk8s-gpu-queue-workers/worker',
  tag: '0.1.0',
} as const;

/** `repository:tag` of the default worker image. */
export const DEFAULT_WORKER_IMAGE = `${WORKER_IMAGE.repository}:${WORKER_IMAGE.tag}`;

/** Environment variables the worker reads. The constructs set exactly these. */
export const WorkerEnv = {
  /** AMQP URL including credentials, e.g. `amqp://user:pass@rabbitmq.messaging:5672/%2F`. Always from a Secret. */
  RABBITMQ_URL: 'RABBITMQ_URL',
  /** Name of the quorum queue that holds `AIGenerationJobRequested` messages. */
  JOB_QUEUE: 'JOB_QUEUE',
  /** Exchange that `AIGenerationJobCompleted` / `AIGenerationJobFailed` results are published to. */
  RESULTS_EXCHANGE: 'RESULTS_EXCHANGE',
  /** Exchange that rejected jobs are dead-lettered to. */
  DEAD_LETTER_EXCHANGE: 'DEAD_LETTER_EXCHANGE',
  /** Queue bound to the dead-letter exchange, where rejected jobs wait for a person. */
  DEAD_LETTER_QUEUE: 'DEAD_LETTER_QUEUE',
  /**
   * Redeliveries allowed for one job (quorum queue `x-delivery-limit`): a job is attempted at most limit + 1
   * times; the worker answers the last attempt with a failed result and the job is dead-lettered.
   */
  DELIVERY_LIMIT: 'DELIVERY_LIMIT',
  /** Unacknowledged messages the broker may push to one worker (AMQP basic.qos). */
  PREFETCH: 'PREFETCH',
  /** Largest number of jobs run as one inference call. */
  MAX_BATCH_SIZE: 'MAX_BATCH_SIZE',
  /** How long a partial batch waits for more jobs before it runs, in milliseconds. */
  MAX_BATCH_WAIT_MS: 'MAX_BATCH_WAIT_MS',
  /** Largest accepted message body, in bytes; larger jobs fail as oversize. */
  MAX_MESSAGE_BYTES: 'MAX_MESSAGE_BYTES',
  /** Path of the ONNX model file inside the container. */
  MODEL_PATH: 'MODEL_PATH',
  /** `auto` (CUDA when present, else CPU), `cuda` or `cpu`. */
  EXECUTION_PROVIDER: 'EXECUTION_PROVIDER',
  /** Port of the HTTP server that serves health endpoints and metrics. */
  HTTP_PORT: 'HTTP_PORT',
  /** After SIGTERM, how long in-flight jobs may run before the worker gives up on them, in milliseconds. */
  SHUTDOWN_TIMEOUT_MS: 'SHUTDOWN_TIMEOUT_MS',
  /** Identity reported in results and logs; the pod name in Kubernetes. */
  WORKER_ID: 'WORKER_ID',
  /** pino log level: `fatal`, `error`, `warn`, `info`, `debug` or `trace`. */
  LOG_LEVEL: 'LOG_LEVEL',
} as const;

/** Execution providers the worker accepts in `EXECUTION_PROVIDER`. */
export const EXECUTION_PROVIDERS = ['auto', 'cuda', 'cpu'] as const;

/** One of {@link EXECUTION_PROVIDERS}. */
export type ExecutionProviderChoice = (typeof EXECUTION_PROVIDERS)[number];

/** Defaults the worker applies when a variable is unset, and that the constructs document. */
export const WORKER_DEFAULTS = {
  jobQueue: 'ai-generation-jobs',
  resultsExchange: 'ai-generation-results',
  deadLetterExchange: 'ai-generation-jobs.dlx',
  deadLetterQueue: 'ai-generation-jobs.dead-letter',
  deliveryLimit: 3,
  maxBatchSize: 8,
  maxBatchWaitMs: 5,
  /** 16 MiB: a 3×1024×1024 float32 image as raw bytes fits, with room for its metadata. */
  maxMessageBytes: 16 * 1024 * 1024,
  modelPath: '/models/model.onnx',
  executionProvider: 'auto' as ExecutionProviderChoice,
  logLevel: 'info',
} as const;

/**
 * Default prefetch: one batch of unacked jobs. Enough to fill a model call, little enough that a new replica finds
 * work in the queue instead of in an old replica's buffer.
 */
export function defaultPrefetch(maxBatchSize: number): number {
  return maxBatchSize;
}

/**
 * Inclusive ranges the worker accepts for its numeric settings. The worker refuses to start outside them; the
 * constructs refuse to synthesize such a value, so a bad setting fails at `cdk8s synth`, not as a crash loop.
 */
export const WORKER_LIMITS = {
  deliveryLimit: { min: 1, max: 1000 },
  prefetch: { min: 1, max: 65_535 },
  maxBatchSize: { min: 1, max: 1024 },
  maxBatchWaitMs: { min: 0, max: 60_000 },
  maxMessageBytes: { min: 1024, max: 512 * 1024 * 1024 },
  httpPort: { min: 1, max: 65_535 },
  shutdownTimeoutMs: { min: 0, max: 24 * 60 * 60 * 1000 },
} as const;

/** The worker's HTTP server: one port for probes and metrics. */
export const WorkerHttp = {
  port: 8080,
  /** Name of the container port; the PodMonitor scrapes it by this name. */
  portName: 'http',
  /** 200 while the process is alive and its event loop answers. Liveness. */
  healthPath: '/healthz',
  /** 200 once the model is loaded and the broker connection is open; 503 otherwise. Startup and readiness. */
  readyPath: '/readyz',
  /** Prometheus text exposition. */
  metricsPath: '/metrics',
} as const;

/** Values of the `outcome` label of {@link WorkerMetrics.jobsTotal}. */
export const JobOutcome = {
  /** Result published and confirmed, job acked. */
  completed: 'completed',
  /** Job cannot succeed (bad input): failed result published, message dead-lettered. */
  rejected: 'rejected',
  /** Inference raised an error: the message is returned to the queue for another attempt. */
  retried: 'retried',
  /** Delivery limit reached after retries: failed result published, message dead-lettered. */
  exhausted: 'exhausted',
} as const;

/** Prometheus metrics the worker exports and the monitoring constructs alert on. */
export const WorkerMetrics = {
  /** Counter of finished deliveries, label `outcome` (see {@link JobOutcome}). */
  jobsTotal: 'ai_worker_jobs_total',
  /** Histogram of receive-to-ack time of each job, in seconds. */
  jobDurationSeconds: 'ai_worker_job_duration_seconds',
  /** Histogram of one model call (a whole batch), in seconds. */
  inferenceDurationSeconds: 'ai_worker_inference_duration_seconds',
  /** Histogram of the number of jobs in each model call. */
  batchSize: 'ai_worker_batch_size',
  /** Gauge of jobs received and not yet acked or rejected. */
  jobsInFlight: 'ai_worker_jobs_in_flight',
  /** Counter of broker reconnections after a lost connection or channel. */
  brokerReconnectsTotal: 'ai_worker_broker_reconnects_total',
  /** Gauge, 1 while the broker connection and channel are open. */
  brokerConnected: 'ai_worker_broker_connected',
  /** Gauge set to 1, label `provider` naming the onnxruntime execution provider in use (`cuda` or `cpu`). */
  executionProviderInfo: 'ai_worker_execution_provider_info',
} as const;

/** AMQP `type` property of each message the worker reads or writes. */
export const MessageType = {
  jobRequested: 'AIGenerationJobRequested',
  jobCompleted: 'AIGenerationJobCompleted',
  jobFailed: 'AIGenerationJobFailed',
} as const;
