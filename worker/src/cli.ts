#!/usr/bin/env node
/**
 * ai-worker-cli: puts jobs on the queue and reads results off the results exchange, for demos, load and tests.
 *
 *   ai-worker-cli publish --model models/mlp.onnx --count 100 --rate 20
 *   ai-worker-cli publish --file job.json
 *   ai-worker-cli follow --count 100 --timeout 60
 *
 * Start `follow` before `publish`: results published while nobody is bound to the results exchange are dropped
 * by the broker, as with any exchange.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as amqp from 'amqplib';
import { Command, InvalidArgumentError, Option } from 'commander';
import { InferenceSession } from 'onnxruntime-node';
import { MessageType, WORKER_DEFAULTS, WorkerEnv } from './contract';
import {
  AIGenerationJobRequested,
  AIGenerationJobRequestedSchema,
  BINARY_CONTENT_TYPE,
  BINARY_JOB_HEADER,
  JSON_CONTENT_TYPE,
  SCHEMA_VERSION,
} from './messages';
import { bytesPerElement, Datatype, datatypeOf, elementCount } from './tensors';

const LOCAL_BROKER = 'amqp://guest:guest@127.0.0.1:5672';

/** Confirms the publisher waits for before sending more: bounds memory at high rates. */
const MAX_UNCONFIRMED = 256;

type Encoding = 'json' | 'base64' | 'binary';

/** One message ready to publish. */
interface OutgoingJob {
  readonly jobId: string;
  readonly content: Buffer;
  readonly contentType: string;
  readonly headers?: Record<string, unknown>;
}

// ---------------------------------------------------------------------------------------------- publish

interface PublishOptions {
  url: string;
  queue: string;
  file?: string;
  model?: string;
  shape: Record<string, number[]>;
  encoding: Encoding;
  kind: 'inference' | 'generation';
  maxNewTokens?: number;
  temperature?: number;
  topK?: number;
  seed?: number;
  stopTokenId?: number;
  intMax: number;
  count: number;
  rate: number;
  jobIdPrefix: string;
  replyTo?: string;
  validate: boolean;
  quiet: boolean;
}

async function publish(options: PublishOptions): Promise<void> {
  const makeJob = options.file ? await jobsFromFile(options) : await jobsFromModel(options);

  const connection = await amqp.connect(options.url, { clientProperties: { connection_name: 'ai-worker-cli publish' } });
  const channel = await connection.createConfirmChannel();
  let returned = 0;
  // mandatory + 'return': a job that no queue takes comes back instead of vanishing.
  channel.on('return', () => returned++);

  const started = Date.now();
  let published = 0;
  let confirmed = 0;
  const unconfirmed = new Set<Promise<void>>();
  const progress = startProgress(options.quiet, () => `published ${published}/${options.count}, confirmed ${confirmed}`);

  try {
    for (let i = 0; i < options.count; i++) {
      if (options.rate > 0) await sleepUntil(started + (i * 1000) / options.rate);
      if (unconfirmed.size >= MAX_UNCONFIRMED) await Promise.race(unconfirmed);

      const job = makeJob(i);
      const confirm = new Promise<void>((resolve, reject) => {
        channel.publish('', options.queue, job.content, {
          contentType: job.contentType,
          type: MessageType.jobRequested,
          messageId: job.jobId,
          correlationId: job.jobId,
          replyTo: options.replyTo,
          headers: job.headers,
          persistent: true,
          mandatory: true,
          timestamp: Math.floor(Date.now() / 1000),
        }, (err) => (err ? reject(new Error(`broker refused job ${job.jobId}: ${String(err)}`)) : resolve()));
      }).then(() => {
        confirmed++;
      });
      unconfirmed.add(confirm);
      void confirm.finally(() => unconfirmed.delete(confirm)).catch(() => undefined);
      published++;
    }
    await Promise.all(unconfirmed);
  } finally {
    progress.stop();
    await connection.close().catch(() => undefined);
  }

  const seconds = (Date.now() - started) / 1000;
  process.stdout.write(`${JSON.stringify({ published, confirmed, returned, seconds, jobIdPrefix: options.jobIdPrefix })}\n`);
  if (returned > 0) {
    throw new Error(
      `${returned} job(s) came back unrouted: queue '${options.queue}' does not exist. Start a worker first ` +
        '(it declares the queue) or check --queue',
    );
  }
}

/** Jobs from a JSON file holding one job or an array of them; `--count` cycles through them. */
async function jobsFromFile(options: PublishOptions): Promise<(i: number) => OutgoingJob> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(options.file!, 'utf8'));
  } catch (err) {
    throw new Error(`cannot read job file ${options.file}: ${(err as Error).message}`);
  }
  const templates = Array.isArray(parsed) ? parsed : [parsed];
  if (templates.length === 0) throw new Error(`job file ${options.file} holds an empty array`);

  if (options.validate) {
    templates.forEach((template, index) => {
      const result = AIGenerationJobRequestedSchema.safeParse({ schemaVersion: SCHEMA_VERSION, jobId: 'x', ...template });
      if (!result.success) {
        const problems = result.error.issues.map((issue) => `${issue.path.join('.') || '(job)'}: ${issue.message}`);
        throw new Error(
          `job ${index} in ${options.file} is not a valid ${MessageType.jobRequested}: ${problems.join('; ')} ` +
            '(--no-validate sends it anyway)',
        );
      }
    });
  }

  return (i) => {
    const template = templates[i % templates.length] as Record<string, unknown>;
    // Each published copy is its own job: a repeated jobId would look like a redelivery to consumers.
    const jobId = options.count === 1 && typeof template.jobId === 'string' ? template.jobId : `${options.jobIdPrefix}${i}`;
    const job = { schemaVersion: SCHEMA_VERSION, ...template, jobId };
    return { jobId, content: Buffer.from(JSON.stringify(job)), contentType: JSON_CONTENT_TYPE };
  };
}

/** Jobs with random inputs shaped after the model's inputs; dynamic dimensions come from `--shape` or are 1. */
async function jobsFromModel(options: PublishOptions): Promise<(i: number) => OutgoingJob> {
  if (!options.model) throw new Error('give --file <job.json> or --model <model.onnx> to generate inputs');
  const session = await InferenceSession.create(options.model).catch((err: Error) => {
    throw new Error(`cannot load model ${options.model}: ${err.message}`);
  });

  const inputs = session.inputMetadata.map((meta) => {
    if (!meta.isTensor) throw new Error(`model input ${meta.name} is not a tensor; give a --file job instead`);
    const datatype = datatypeOf(meta.type);
    if (!datatype) throw new Error(`model input ${meta.name} has element type ${meta.type}, which jobs cannot carry`);
    const shape = options.shape[meta.name] ?? meta.shape.map((d) => (typeof d === 'number' && d > 0 ? d : 1));
    if (shape.length !== meta.shape.length) {
      throw new Error(
        `--shape ${meta.name} has ${shape.length} dimensions; the model's input has ${meta.shape.length} ` +
          `([${meta.shape.join(', ')}])`,
      );
    }
    return { name: meta.name, datatype, shape };
  });
  for (const name of Object.keys(options.shape)) {
    if (!inputs.some((input) => input.name === name)) {
      const names = inputs.map((input) => input.name).join(', ');
      throw new Error(`--shape names ${name}, which is not an input of the model (inputs: ${names})`);
    }
  }
  await session.release();

  const generation =
    options.kind === 'generation'
      ? {
          maxNewTokens: options.maxNewTokens,
          temperature: options.temperature,
          topK: options.topK,
          seed: options.seed,
          stopTokenId: options.stopTokenId,
        }
      : undefined;

  return (i) => {
    const jobId = `${options.jobIdPrefix}${i}`;
    const tensors = inputs.map((input) => ({ ...input, bytes: randomTensorBytes(input.datatype, input.shape, options.intMax) }));
    const envelope = {
      schemaVersion: SCHEMA_VERSION as typeof SCHEMA_VERSION,
      jobId,
      kind: options.kind,
      ...(generation ? { generation } : {}),
    };

    if (options.encoding === 'binary') {
      const header = { ...envelope, inputs: tensors.map(({ name, datatype, shape }) => ({ name, datatype, shape })) };
      return {
        jobId,
        content: Buffer.concat(tensors.map((t) => t.bytes)),
        contentType: BINARY_CONTENT_TYPE,
        headers: { [BINARY_JOB_HEADER]: JSON.stringify(header) },
      };
    }
    const job: AIGenerationJobRequested = {
      ...envelope,
      inputs: tensors.map(({ name, datatype, shape, bytes }) =>
        options.encoding === 'base64'
          ? { name, datatype, shape, base64: bytes.toString('base64') }
          : { name, datatype, shape, data: numbersOf(datatype, bytes) },
      ),
    };
    return { jobId, content: Buffer.from(JSON.stringify(job)), contentType: JSON_CONTENT_TYPE };
  };
}

/** Random little-endian tensor bytes: floats in [0, 1), integers in [0, intMax). */
function randomTensorBytes(datatype: Datatype, shape: readonly number[], intMax: number): Buffer {
  const n = elementCount(shape);
  const buffer = Buffer.alloc(n * bytesPerElement(datatype));
  for (let i = 0; i < n; i++) {
    const int = Math.floor(Math.random() * intMax);
    switch (datatype) {
      case 'FP32': buffer.writeFloatLE(Math.random(), i * 4); break;
      case 'FP64': buffer.writeDoubleLE(Math.random(), i * 8); break;
      case 'INT64': buffer.writeBigInt64LE(BigInt(int), i * 8); break;
      case 'UINT64': buffer.writeBigUInt64LE(BigInt(int), i * 8); break;
      case 'INT32': buffer.writeInt32LE(int, i * 4); break;
      case 'UINT32': buffer.writeUInt32LE(int, i * 4); break;
      case 'INT16': buffer.writeInt16LE(int, i * 2); break;
      case 'UINT16': buffer.writeUInt16LE(int, i * 2); break;
      case 'INT8': buffer.writeInt8(Math.min(int, 127), i); break;
      case 'UINT8': buffer.writeUInt8(Math.min(int, 255), i); break;
      case 'BOOL': buffer.writeUInt8(int % 2, i); break;
      case 'FP16': throw new Error('generating FP16 inputs is not supported; give a --file job with base64 data');
    }
  }
  return buffer;
}

/** The same bytes as JSON numbers, for `--encoding json`. */
function numbersOf(datatype: Datatype, bytes: Buffer): number[] {
  const size = bytesPerElement(datatype);
  const out: number[] = [];
  for (let offset = 0; offset < bytes.length; offset += size) {
    switch (datatype) {
      case 'FP32': out.push(bytes.readFloatLE(offset)); break;
      case 'FP64': out.push(bytes.readDoubleLE(offset)); break;
      case 'INT64': out.push(Number(bytes.readBigInt64LE(offset))); break;
      case 'UINT64': out.push(Number(bytes.readBigUInt64LE(offset))); break;
      case 'INT32': out.push(bytes.readInt32LE(offset)); break;
      case 'UINT32': out.push(bytes.readUInt32LE(offset)); break;
      case 'INT16': out.push(bytes.readInt16LE(offset)); break;
      case 'UINT16': out.push(bytes.readUInt16LE(offset)); break;
      case 'INT8': out.push(bytes.readInt8(offset)); break;
      default: out.push(bytes.readUInt8(offset));
    }
  }
  return out;
}

// ----------------------------------------------------------------------------------------------- follow

interface FollowOptions {
  url: string;
  exchange: string;
  queue?: string;
  count?: number;
  timeout?: number;
  brief: boolean;
  quiet: boolean;
}

async function follow(options: FollowOptions): Promise<void> {
  const connection = await amqp.connect(options.url, { clientProperties: { connection_name: 'ai-worker-cli follow' } });
  const channel = await connection.createChannel();
  const exchangeExists = await channel.checkExchange(options.exchange).then(
    () => true,
    () => false,
  );
  if (!exchangeExists) {
    await connection.close().catch(() => undefined);
    throw new Error(`exchange '${options.exchange}' does not exist; start a worker first (it declares it) or check --exchange`);
  }

  // A named queue keeps results while nobody follows; the default one lives only as long as this command.
  const { queue } = options.queue
    ? await channel.assertQueue(options.queue, { durable: true })
    : await channel.assertQueue('', { exclusive: true, autoDelete: true });
  await channel.bindQueue(queue, options.exchange, '#');
  if (!options.quiet) process.stderr.write(`following results on '${options.exchange}' via queue '${queue}'\n`);

  const seen = new Set<string>();
  const counts: Record<string, number> = {};
  let duplicates = 0;
  const progress = startProgress(options.quiet, () => `results ${seen.size}${options.count ? `/${options.count}` : ''}`);

  const finished = new Promise<'complete' | 'timeout' | 'interrupted' | 'cancelled'>((resolve) => {
    if (options.timeout) setTimeout(() => resolve('timeout'), options.timeout * 1000).unref();
    process.once('SIGINT', () => resolve('interrupted'));
    void channel.consume(queue, (msg) => {
      if (!msg) return resolve('cancelled');
      const type = String(msg.properties.type ?? 'unknown');
      let body: { jobId?: string | null; code?: string; retryable?: boolean } = {};
      try {
        body = JSON.parse(msg.content.toString('utf8'));
      } catch {
        // Not a result this CLI understands; print what is known about it and go on.
      }
      const key = `${body.jobId ?? msg.properties.correlationId ?? msg.properties.messageId}`;
      if (seen.has(key)) duplicates++;
      seen.add(key);
      counts[type] = (counts[type] ?? 0) + 1;

      const line = options.brief
        ? {
            type,
            jobId: body.jobId,
            correlationId: msg.properties.correlationId,
            ...(body.code ? { code: body.code, retryable: body.retryable } : {}),
          }
        : { type, correlationId: msg.properties.correlationId, body };
      process.stdout.write(`${JSON.stringify(line)}\n`);
      channel.ack(msg);
      if (options.count !== undefined && seen.size >= options.count) resolve('complete');
    });
  });

  const ending = await finished;
  progress.stop();
  await connection.close().catch(() => undefined);
  process.stderr.write(`${JSON.stringify({ jobs: seen.size, byType: counts, duplicates })}\n`);

  // Without --count, following until Ctrl-C is the normal way to stop.
  if (ending === 'complete' || (ending === 'interrupted' && options.count === undefined)) return;
  const got = options.count === undefined ? `${seen.size} results` : `${seen.size} of ${options.count} results`;
  const why = {
    timeout: `timed out after ${options.timeout} s`,
    interrupted: 'interrupted',
    cancelled: 'the broker cancelled the consumer',
  }[ending];
  throw new Error(`${why} with ${got}`);
}

// -------------------------------------------------------------------------------------------- plumbing

function startProgress(quiet: boolean, describe: () => string): { stop(): void } {
  if (quiet) return { stop: () => undefined };
  const timer = setInterval(() => process.stderr.write(`${describe()}\n`), 1000);
  return {
    stop: () => {
      clearInterval(timer);
      process.stderr.write(`${describe()}\n`);
    },
  };
}

function sleepUntil(at: number): Promise<void> {
  const ms = at - Date.now();
  return ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve();
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a whole number of at least 1');
  return n;
}

function nonNegativeNumber(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError('must be a number of at least 0');
  return n;
}

function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('must be a whole number of at least 0');
  return n;
}

/** `--shape x=1,3,320,320`, repeatable. */
function shapeOption(value: string, previous: Record<string, number[]>): Record<string, number[]> {
  const match = /^([^=]+)=(\d+(?:,\d+)*)$/.exec(value);
  if (!match) throw new InvalidArgumentError('expected <input>=<d1>,<d2>,..., e.g. x=1,3,320,320');
  return { ...previous, [match[1]]: match[2].split(',').map(Number) };
}

export function buildProgram(): Command {
  const program = new Command('ai-worker-cli')
    .description('Publish AIGenerationJobRequested jobs and follow their results.')
    .showHelpAfterError();

  const url = () =>
    new Option('--url <amqp-url>', 'broker URL').env(WorkerEnv.RABBITMQ_URL).default(LOCAL_BROKER);

  program
    .command('publish')
    .description('publish N jobs, from a JSON file or with random inputs shaped after a model, at a given rate')
    .addOption(url())
    .addOption(new Option('--queue <name>', 'job queue').env(WorkerEnv.JOB_QUEUE).default(WORKER_DEFAULTS.jobQueue))
    .option('--file <job.json>', 'a job (or an array of jobs) as JSON; schemaVersion and jobId are filled in')
    .option('--model <model.onnx>', 'generate random inputs for this model')
    .option('--shape <input=d1,d2,...>', 'shape of a generated input (repeatable); dynamic dimensions default to 1', shapeOption, {})
    .addOption(
      new Option('--encoding <encoding>', 'how generated tensors travel').choices(['json', 'base64', 'binary']).default('base64'),
    )
    .addOption(new Option('--kind <kind>', 'job kind').choices(['inference', 'generation']).default('inference'))
    .option('--max-new-tokens <n>', 'generation: tokens to generate at most', positiveInt)
    .option('--temperature <t>', 'generation: 0 is greedy', nonNegativeNumber)
    .option('--top-k <k>', 'generation: sample among the k most likely tokens', nonNegativeInt)
    .option('--seed <n>', 'generation: sampler seed', nonNegativeInt)
    .option('--stop-token-id <id>', 'generation: stop after this token', nonNegativeInt)
    .option('--int-max <n>', 'generated integer inputs are drawn from [0, n)', positiveInt, 10)
    .option('-n, --count <n>', 'jobs to publish', positiveInt, 1)
    .option('--rate <per-second>', 'jobs per second; 0 publishes as fast as confirms allow', nonNegativeNumber, 0)
    .option('--job-id-prefix <prefix>', 'job ids are <prefix><index>', `cli-${randomBytes(3).toString('hex')}-`)
    .option('--reply-to <queue>', 'also send each result to this queue (AMQP reply_to)')
    .option('--no-validate', 'send --file jobs without checking them against the schema (to demo rejections)')
    .option('-q, --quiet', 'no progress on stderr', false)
    .action((options: PublishOptions) => publish(options));

  program
    .command('follow')
    .description('print results from the results exchange as JSON lines, until N jobs are answered or a timeout')
    .addOption(url())
    .addOption(
      new Option('--exchange <name>', 'results exchange').env(WorkerEnv.RESULTS_EXCHANGE).default(WORKER_DEFAULTS.resultsExchange),
    )
    .option('--queue <name>', 'durable queue to bind and read (kept after exit); a temporary queue by default')
    .option('-n, --count <n>', 'stop after results for this many distinct jobs', positiveInt)
    .option('--timeout <seconds>', 'give up (exit 1) after this long', nonNegativeNumber)
    .option('--brief', 'print only type, jobId and failure code of each result', false)
    .option('-q, --quiet', 'no progress on stderr', false)
    .action((options: FollowOptions) => follow(options));

  return program;
}

if (require.main === module) {
  buildProgram()
    .parseAsync(process.argv)
    .catch((err: Error) => {
      process.stderr.write(`ai-worker-cli: ${err.message}\n`);
      process.exit(1);
    });
}
