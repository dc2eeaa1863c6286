/**
 * The two kinds of job failure the worker tells apart.
 *
 * A {@link JobRejection} means the job itself is wrong (bad JSON, a tensor of the wrong shape, an unknown
 * input): running it again can never succeed, so it is answered with a failed result and dead-lettered at
 * once. Any other error (the model raised, the GPU ran out of memory, the broker went away) may pass on
 * another attempt, so the message goes back to the queue until its delivery limit.
 */

/** Machine-readable category of a rejection; stable, so producers and dashboards can group by it. */
export type RejectionCode =
  | 'oversize'
  | 'content_type'
  | 'message_type'
  | 'malformed_json'
  | 'schema'
  | 'unsupported_version'
  | 'unknown_input'
  | 'missing_input'
  | 'unknown_output'
  | 'datatype'
  | 'shape'
  | 'data'
  | 'job_kind';

/** The job can never succeed as sent. Not retryable: publish a failed result and dead-letter the message. */
export class JobRejection extends Error {
  readonly retryable = false;

  /**
   * @param code category of the problem
   * @param reason what is wrong and, where it helps, what to send instead; shown to the producer verbatim
   * @param jobId the job's id when it could be read from the message, so the failed result can name it
   */
  constructor(
    readonly code: RejectionCode,
    readonly reason: string,
    readonly jobId?: string,
  ) {
    super(reason);
    this.name = 'JobRejection';
  }

  /** The same rejection, now attributed to a job id learnt after it was raised. */
  withJobId(jobId: string | undefined): JobRejection {
    if (jobId === undefined || this.jobId !== undefined) return this;
    return new JobRejection(this.code, this.reason, jobId);
  }
}

/**
 * The job was handed back before it started on the model, because the worker is shutting down. Not a failure of
 * the job: the consumer returns the message to the queue without counting an attempt, for another worker to run.
 */
export class JobWithdrawn extends Error {
  constructor() {
    super('the worker is shutting down; the job was handed back before it started');
    this.name = 'JobWithdrawn';
  }
}

/** True when another delivery of the same job might succeed. */
export function isRetryable(error: unknown): boolean {
  return !(error instanceof JobRejection);
}

/** The model file could not be loaded. Fatal at start-up: the worker exits non-zero with this message. */
export class ModelLoadError extends Error {
  constructor(
    readonly modelPath: string,
    readonly causeMessage: string,
    options?: { cause?: unknown },
  ) {
    super(`cannot load the ONNX model at ${modelPath}: ${causeMessage}`, options);
    this.name = 'ModelLoadError';
  }
}

/** `EXECUTION_PROVIDER=cuda` was asked for on a machine that cannot provide it. Fatal at start-up. */
export class ExecutionProviderUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ExecutionProviderUnavailableError';
  }
}
