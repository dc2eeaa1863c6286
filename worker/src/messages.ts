/**
 * The messages the worker reads and writes, defined once with zod and exported as types for producers.
 *
 * - `AIGenerationJobRequested`: a job. JSON (`application/json`) with its tensors inline, as JSON numbers or
 *   base64 bytes; or a binary body (`application/octet-stream`) holding the raw tensor bytes back to back,
 *   with the rest of the job as JSON in the {@link BINARY_JOB_HEADER} header.
 * - `AIGenerationJobCompleted`: the job's outputs, timings and the worker that ran it.
 * - `AIGenerationJobFailed`: why the job failed and whether sending it again could help.
 *
 * Every message carries `schemaVersion`. Unknown fields are rejected, so a misspelt option never silently
 * changes what a job does; a new field therefore comes with a new schema version. docs/messages.md is the
 * producer's guide to all of this.
 */
import { performance } from 'perf_hooks';
import type { Tensor } from 'onnxruntime-node';
import { z } from 'zod';
import { MessageType } from './contract';
import { JobRejection } from './errors';
import {
  DATATYPES,
  Datatype,
  EncodedTensor,
  TensorEncoding,
  bytesFromBase64,
  bytesPerElement,
  elementCount,
  encodeTensor,
  tensorFromBytes,
  tensorFromNumbers,
} from './tensors';

/** The schema version this worker reads and writes. */
export const SCHEMA_VERSION = 1;

/** Content type of a job whose tensors are inline in JSON. */
export const JSON_CONTENT_TYPE = 'application/json';

/** Content type of a job whose body is raw tensor bytes. */
export const BINARY_CONTENT_TYPE = 'application/octet-stream';

/** AMQP header that holds the JSON job description of a binary-body job (its `inputs` without data). */
export const BINARY_JOB_HEADER = 'ai-job';

/** Upper bound on `generation.maxNewTokens`: one job must not hold the accelerator for minutes. */
export const MAX_NEW_TOKENS_LIMIT = 4096;

// Dimensions fit in int32 like every accelerator kernel expects; rank 16 is more than any real model uses.
const MAX_DIM = 2 ** 31 - 1;
const MAX_RANK = 16;
const MAX_TENSORS = 64;
const NAME = z.string().min(1).max(256);

const tensorMetadata = {
  name: NAME,
  datatype: z.enum(DATATYPES),
  shape: z.array(z.int().min(0).max(MAX_DIM)).max(MAX_RANK),
};

/** A job input in a JSON body: metadata plus exactly one of `data` (JSON numbers) or `base64` (raw bytes). */
export const InputTensorSchema = z
  .strictObject({
    ...tensorMetadata,
    data: z.array(z.union([z.number(), z.boolean()])).optional(),
    base64: z.string().optional(),
  })
  .refine((t) => (t.data === undefined) !== (t.base64 === undefined), {
    message: 'give exactly one of data (JSON numbers) or base64 (raw little-endian bytes)',
  });

/** A job input of a binary-body job: metadata only; its bytes are the next slice of the body. */
export const BinaryInputTensorSchema = z.strictObject(tensorMetadata);

/** Parameters of a generation job. Greedy decoding unless `temperature` is above 0. */
export const GenerationParamsSchema = z.strictObject({
  /** Tokens to generate at most. */
  maxNewTokens: z.int().min(1).max(MAX_NEW_TOKENS_LIMIT).default(16),
  /** 0 picks the most likely token every step (greedy); above 0 samples, higher is more random. */
  temperature: z.number().min(0).max(100).default(0),
  /** Sample only among the k most likely tokens; 0 means all of them. Ignored when greedy. */
  topK: z.int().min(0).default(0),
  /** Seed of the sampler, so a sampled job can be repeated exactly; chosen by the worker (and reported) if unset. */
  seed: z.int().min(0).max(2 ** 32 - 1).optional(),
  /** Generation ends after this token is produced (it is included in the output). */
  stopTokenId: z.int().min(0).optional(),
});

function jobEnvelope<T extends z.ZodType>(input: T) {
  return z
    .strictObject({
      schemaVersion: z.literal(SCHEMA_VERSION),
      /** Unique id of the job: the idempotency key. Results carry it back. */
      jobId: NAME,
      /** `inference`: one model call, tensors in and out. `generation`: autoregressive decoding. */
      kind: z.enum(['inference', 'generation']).default('inference'),
      inputs: z.array(input).min(1).max(MAX_TENSORS),
      /** Outputs to return, by name; all of the model's outputs when unset. */
      outputs: z.array(NAME).min(1).max(MAX_TENSORS).optional(),
      /** How result tensors are written; JSON numbers when every input was JSON numbers, base64 otherwise. */
      outputEncoding: z.enum(['json', 'base64']).optional(),
      generation: GenerationParamsSchema.optional(),
    })
    .refine((job) => job.kind === 'generation' || job.generation === undefined, {
      message: 'generation parameters are only allowed when kind is "generation"',
      path: ['generation'],
    });
}

/** `AIGenerationJobRequested` with a JSON body. */
export const AIGenerationJobRequestedSchema = jobEnvelope(InputTensorSchema);

/** The {@link BINARY_JOB_HEADER} header of an `AIGenerationJobRequested` with a binary body. */
export const AIGenerationJobRequestedBinaryHeaderSchema = jobEnvelope(BinaryInputTensorSchema);

/** A job as a producer writes it (JSON body). Defaults not yet applied, so optional fields may be left out. */
export type AIGenerationJobRequested = z.input<typeof AIGenerationJobRequestedSchema>;

/** The {@link BINARY_JOB_HEADER} header value of a binary-body job, before JSON encoding. */
export type AIGenerationJobRequestedBinaryHeader = z.input<typeof AIGenerationJobRequestedBinaryHeaderSchema>;

/** Generation parameters with their defaults applied. */
export type GenerationParams = z.output<typeof GenerationParamsSchema>;

const OutputTensorSchema = z.union([
  z.strictObject({ ...tensorMetadata, data: z.array(z.number()) }),
  z.strictObject({ ...tensorMetadata, base64: z.string() }),
]);

/** `AIGenerationJobCompleted`: what the job produced. */
export const AIGenerationJobCompletedSchema = z.strictObject({
  schemaVersion: z.literal(SCHEMA_VERSION),
  jobId: NAME,
  kind: z.enum(['inference', 'generation']),
  /** The worker (pod) that ran the job. */
  workerId: z.string(),
  outputs: z.array(OutputTensorSchema),
  timings: z.strictObject({
    /** From receipt of the message to the result being ready, in milliseconds. */
    totalMs: z.number().min(0),
    /** Parsing and decoding the message. */
    decodeMs: z.number().min(0),
    /** Waiting for other jobs to fill a batch, and for the model to be free. */
    queueMs: z.number().min(0),
    /** Model calls: the whole batch's call for inference jobs, the sum of all steps for generation jobs. */
    inferenceMs: z.number().min(0),
    /** Jobs in the model call that ran this one (1 for generation). */
    batchSize: z.int().min(1),
  }),
  /** Only for generation jobs. */
  generation: z
    .strictObject({
      /** `stop_token` when the stop token was produced, `max_new_tokens` when the limit was reached. */
      finishReason: z.enum(['stop_token', 'max_new_tokens']),
      newTokens: z.int().min(0),
      /** The sampler's seed, chosen by the worker when the job gave none; absent for greedy decoding. */
      seed: z.int().optional(),
    })
    .optional(),
});

/** `AIGenerationJobCompleted` as published. */
export type AIGenerationJobCompleted = z.infer<typeof AIGenerationJobCompletedSchema>;

/** `AIGenerationJobFailed`: why the job failed. */
export const AIGenerationJobFailedSchema = z.strictObject({
  schemaVersion: z.literal(SCHEMA_VERSION),
  /** The job's id, or null when the message was too broken to carry a readable one (see AMQP message_id). */
  jobId: NAME.nullable(),
  workerId: z.string(),
  /** A rejection code (see RejectionCode) for bad input; `inference_error` or `delivery_limit` otherwise. */
  code: z.string(),
  reason: z.string(),
  /** False when the job as sent can never succeed; true when the same job might pass on another attempt. */
  retryable: z.boolean(),
});

/** `AIGenerationJobFailed` as published. */
export type AIGenerationJobFailed = z.infer<typeof AIGenerationJobFailedSchema>;

/** The AMQP properties of a delivery that parsing looks at. */
export interface JobMessageProperties {
  contentType?: string;
  contentEncoding?: string;
  type?: string;
  messageId?: string;
  headers?: Record<string, unknown>;
}

/** A job ready for the inference engine: validated, its tensors decoded. */
export interface Job {
  readonly jobId: string;
  readonly kind: 'inference' | 'generation';
  /** Decoded inputs, by name, in the order the message listed them. */
  readonly inputs: ReadonlyMap<string, Tensor>;
  /** Outputs to return; undefined means all. */
  readonly outputs?: readonly string[];
  readonly outputEncoding: TensorEncoding;
  /** Set, with defaults applied, when kind is `generation`. */
  readonly generation?: GenerationParams;
  /** Time spent parsing and decoding the message, in milliseconds. */
  readonly decodeMs: number;
}

/** Limits applied while parsing. */
export interface ParseLimits {
  /** Largest accepted body, in bytes (MAX_MESSAGE_BYTES). */
  readonly maxMessageBytes: number;
}

/**
 * Turns a delivery into a {@link Job}, or throws a {@link JobRejection} that says precisely what is wrong:
 * oversize body, unsupported content type or message type, malformed JSON, the schema path that failed,
 * tensor data that does not match its datatype or shape. The rejection carries the job id when one could be
 * read (from the body, else the AMQP message id). Model-specific checks (input names, shapes) are the
 * inference engine's.
 */
export function parseJob(content: Buffer, properties: JobMessageProperties, limits: ParseLimits): Job {
  const started = performance.now();
  const fallbackId = typeof properties.messageId === 'string' && properties.messageId !== '' ? properties.messageId : undefined;
  try {
    checkEnvelope(content, properties, limits);
    const job = isBinary(properties.contentType) ? parseBinaryJob(content, properties) : parseJsonJob(content);
    return { ...job, decodeMs: performance.now() - started };
  } catch (error) {
    if (error instanceof JobRejection) throw error.withJobId(fallbackId);
    throw error;
  }
}

function checkEnvelope(content: Buffer, properties: JobMessageProperties, limits: ParseLimits): void {
  if (content.length > limits.maxMessageBytes) {
    throw new JobRejection(
      'oversize',
      `message body is ${content.length} bytes, over the limit of ${limits.maxMessageBytes} (MAX_MESSAGE_BYTES); ` +
        'split the job or raise the limit',
    );
  }
  if (properties.type !== undefined && properties.type !== MessageType.jobRequested) {
    throw new JobRejection('message_type', `AMQP type is "${properties.type}"; this queue takes only "${MessageType.jobRequested}"`);
  }
  const encoding = properties.contentEncoding;
  if (encoding !== undefined && encoding !== '' && encoding !== 'identity') {
    throw new JobRejection('content_type', `content encoding "${encoding}" is not supported; send the body uncompressed`);
  }
  const type = mediaType(properties.contentType);
  if (type !== undefined && type !== JSON_CONTENT_TYPE && type !== BINARY_CONTENT_TYPE) {
    throw new JobRejection(
      'content_type',
      `content type "${properties.contentType}" is not supported; use ${JSON_CONTENT_TYPE} or ${BINARY_CONTENT_TYPE}`,
    );
  }
}

function parseJsonJob(content: Buffer): Omit<Job, 'decodeMs'> {
  const body = parseJson(content.toString('utf8'), 'message body');
  const envelope = validate(AIGenerationJobRequestedSchema, body, '');

  const inputs = new Map<string, Tensor>();
  let allNumbers = true;
  forEachInput(envelope, (input, i) => {
    const where = `inputs[${i}] (${input.name})`;
    checkUniqueName(inputs, input.name, where);
    checkShapeSize(where, input.datatype, input.shape);
    if (input.data !== undefined) {
      inputs.set(input.name, tensorFromNumbers(where, input.datatype, input.shape, input.data));
    } else {
      allNumbers = false;
      inputs.set(input.name, tensorFromBytes(where, input.datatype, input.shape, bytesFromBase64(where, input.base64!)));
    }
  });
  return finishJob(envelope, inputs, allNumbers ? 'json' : 'base64');
}

function parseBinaryJob(content: Buffer, properties: JobMessageProperties): Omit<Job, 'decodeMs'> {
  const header = properties.headers?.[BINARY_JOB_HEADER];
  if (header === undefined) {
    throw new JobRejection('schema', `a ${BINARY_CONTENT_TYPE} job needs its description as JSON in the "${BINARY_JOB_HEADER}" header`);
  }
  // A producer may send the header as a JSON string (any client) or as an AMQP table (decoded to an object).
  const raw =
    typeof header === 'string' || Buffer.isBuffer(header)
      ? parseJson(header.toString(), `header ${BINARY_JOB_HEADER}`)
      : header;
  const envelope = validate(AIGenerationJobRequestedBinaryHeaderSchema, raw, `header ${BINARY_JOB_HEADER}: `);

  // The body is each input's bytes in the order listed, back to back.
  let expected = 0;
  forEachInput(envelope, (input, i) => {
    checkShapeSize(`inputs[${i}] (${input.name})`, input.datatype, input.shape);
    expected += elementCount(input.shape) * bytesPerElement(input.datatype);
  });
  if (expected !== content.length) {
    const sizes = envelope.inputs.map((t) => `${t.name} ${elementCount(t.shape) * bytesPerElement(t.datatype)}`).join(', ');
    throw new JobRejection(
      'data',
      `binary body is ${content.length} bytes; the inputs in header ${BINARY_JOB_HEADER} need ${expected} (${sizes})`,
      envelope.jobId,
    );
  }

  const inputs = new Map<string, Tensor>();
  let offset = 0;
  forEachInput(envelope, (input, i) => {
    const where = `inputs[${i}] (${input.name})`;
    checkUniqueName(inputs, input.name, where);
    const size = elementCount(input.shape) * bytesPerElement(input.datatype);
    inputs.set(input.name, tensorFromBytes(where, input.datatype, input.shape, content.subarray(offset, offset + size)));
    offset += size;
  });
  return finishJob(envelope, inputs, 'base64');
}

function finishJob(
  envelope: z.output<typeof AIGenerationJobRequestedBinaryHeaderSchema>,
  inputs: Map<string, Tensor>,
  defaultEncoding: TensorEncoding,
): Omit<Job, 'decodeMs'> {
  return {
    jobId: envelope.jobId,
    kind: envelope.kind,
    inputs,
    outputs: envelope.outputs,
    outputEncoding: envelope.outputEncoding ?? defaultEncoding,
    generation: envelope.kind === 'generation' ? (envelope.generation ?? GenerationParamsSchema.parse({})) : undefined,
  };
}

// Visits each input; a rejection raised for one of them is attributed to the job it belongs to.
function forEachInput<I>(envelope: { jobId: string; inputs: I[] }, visit: (input: I, index: number) => void): void {
  try {
    envelope.inputs.forEach(visit);
  } catch (error) {
    if (error instanceof JobRejection) throw error.withJobId(envelope.jobId);
    throw error;
  }
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new JobRejection('malformed_json', `${what} is not valid JSON: ${(error as Error).message}`);
  }
}

function validate<T extends z.ZodType>(schema: T, value: unknown, prefix: string): z.output<T> {
  // The version is checked first so that a newer producer hears "unsupported version", not a list of field errors.
  const version = (value as { schemaVersion?: unknown } | null)?.schemaVersion;
  if (typeof value === 'object' && value !== null && version !== undefined && version !== SCHEMA_VERSION) {
    throw new JobRejection(
      'unsupported_version',
      `${prefix}schemaVersion ${JSON.stringify(version)} is not supported by this worker, which reads version ${SCHEMA_VERSION}`,
      jobIdOf(value),
    );
  }
  const result = schema.safeParse(value);
  if (!result.success) {
    const problems = result.error.issues.slice(0, 5).map((issue) => `${formatPath(issue.path)}: ${issue.message}`);
    const more = result.error.issues.length > 5 ? ` (and ${result.error.issues.length - 5} more)` : '';
    throw new JobRejection('schema', `${prefix}${problems.join('; ')}${more}`, jobIdOf(value));
  }
  return result.data;
}

function jobIdOf(value: unknown): string | undefined {
  const id = (value as { jobId?: unknown } | null)?.jobId;
  return typeof id === 'string' && id !== '' ? id : undefined;
}

function formatPath(path: ReadonlyArray<PropertyKey>): string {
  if (path.length === 0) return '(message)';
  return path.map((key, i) => (typeof key === 'number' ? `[${key}]` : `${i === 0 ? '' : '.'}${String(key)}`)).join('');
}

function checkUniqueName(inputs: Map<string, Tensor>, name: string, where: string): void {
  if (inputs.has(name)) throw new JobRejection('schema', `${where}: input "${name}" is given twice`);
}

// Refuses shapes whose byte size cannot be real before anything is allocated for them.
function checkShapeSize(where: string, datatype: Datatype, shape: readonly number[]): void {
  const bytes = elementCount(shape) * bytesPerElement(datatype);
  if (!Number.isSafeInteger(bytes) || bytes > 2 ** 32) {
    throw new JobRejection('oversize', `${where}: shape [${shape.join(', ')}] of ${datatype} would be ${bytes} bytes`);
  }
}

function isBinary(contentType: string | undefined): boolean {
  return mediaType(contentType) === BINARY_CONTENT_TYPE;
}

// "application/json; charset=utf-8" → "application/json"; absent means JSON, the common producer default.
function mediaType(contentType: string | undefined): string | undefined {
  if (contentType === undefined || contentType === '') return undefined;
  return contentType.split(';')[0].trim().toLowerCase();
}

/** What the inference engine hands back for one job. */
export interface JobResult {
  /** The job's outputs, by name (only those it asked for). */
  readonly outputs: ReadonlyMap<string, Tensor>;
  readonly batchSize: number;
  /** Waiting for a batch to fill and for the model to be free, in milliseconds. */
  readonly queueMs: number;
  /** Time in model calls, in milliseconds. */
  readonly inferenceMs: number;
  readonly generation?: { finishReason: 'stop_token' | 'max_new_tokens'; newTokens: number; seed?: number };
}

/** Builds the `AIGenerationJobCompleted` message of a finished job; `totalMs` is receipt to now. */
export function jobCompleted(job: Job, result: JobResult, workerId: string, totalMs: number): AIGenerationJobCompleted {
  const outputs: EncodedTensor[] = [];
  for (const [name, tensor] of result.outputs) outputs.push(encodeTensor(name, tensor, job.outputEncoding));
  return {
    schemaVersion: SCHEMA_VERSION,
    jobId: job.jobId,
    kind: job.kind,
    workerId,
    outputs,
    timings: {
      totalMs,
      decodeMs: job.decodeMs,
      queueMs: result.queueMs,
      inferenceMs: result.inferenceMs,
      batchSize: result.batchSize,
    },
    ...(result.generation ? { generation: result.generation } : {}),
  };
}

/**
 * Builds the `AIGenerationJobFailed` message for an error. A {@link JobRejection} is reported with its code
 * and reason, not retryable; anything else as `inference_error` (or the code given, e.g. `delivery_limit`).
 */
export function jobFailed(
  jobId: string | undefined,
  error: unknown,
  workerId: string,
  options: { code?: string; retryable?: boolean } = {},
): AIGenerationJobFailed {
  const rejection = error instanceof JobRejection ? error : undefined;
  return {
    schemaVersion: SCHEMA_VERSION,
    jobId: rejection?.jobId ?? jobId ?? null,
    workerId,
    code: options.code ?? rejection?.code ?? 'inference_error',
    reason: error instanceof Error ? error.message : String(error),
    retryable: options.retryable ?? !rejection,
  };
}
