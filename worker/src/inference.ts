/**
 * The inference engine: checks jobs against the model and runs them, batching single-pass jobs.
 *
 * Dynamic batching: single-pass jobs whose inputs agree on every dimension but the batch axis wait in one
 * group. A group runs as soon as it holds `maxBatchSize` rows, or when its oldest job has waited
 * `maxBatchWaitMs`. Its inputs are stacked along axis 0, the model runs once, and each job gets its own rows
 * of every output back. One model call runs at a time: while it runs, the next batch fills up, which is what
 * keeps an accelerator busy on large batches under load and answers fast when idle.
 *
 * Generation jobs run one at a time, in arrival order; the steps of the running one take turns on the model with
 * the batches. Running them one after another rather than all at once finishes the first ones sooner, costs no
 * throughput (they are not batched with each other either way), and leaves the waiting ones unstarted, so that
 * a shutdown can hand them back ({@link InferenceEngine.withdrawWaiting}) instead of running them all.
 */
import { performance } from 'perf_hooks';
import { Tensor } from 'onnxruntime-node';
import { JobRejection, JobWithdrawn } from './errors';
import { DecoderSpec, GENERATED_IDS_OUTPUT, decoderSpec, generate } from './generation';
import type { Job, JobResult } from './messages';
import type { LoadedModel, TensorSpec } from './model';
import { concatRows, datatypeOf, sliceRows } from './tensors';

/** One call of the model, reported to {@link InferenceEngineOptions.onModelCall}. */
export interface ModelCall {
  /** `inference` for a batch of single-pass jobs, `generation` for one step of a generation job. */
  readonly kind: 'inference' | 'generation';
  /** Jobs in the call. */
  readonly jobs: number;
  /** Rows along the batch axis (equal to `jobs` when each job sends one item). */
  readonly rows: number;
  readonly seconds: number;
  /** False when the model raised. */
  readonly ok: boolean;
}

/** Options of the {@link InferenceEngine}. */
export interface InferenceEngineOptions {
  /** Most rows stacked into one call (MAX_BATCH_SIZE). A single job larger than this still runs, alone. */
  readonly maxBatchSize: number;
  /** How long the oldest job of a partial batch waits for company (MAX_BATCH_WAIT_MS); 0 runs at once. */
  readonly maxBatchWaitMs: number;
  /**
   * Called after every model call, for metrics, with the jobs in the call, its duration and the full
   * record; must not throw.
   */
  readonly onModelCall?: (batchSize: number, seconds: number, call: ModelCall) => void;
}

interface Pending {
  readonly job: Job;
  readonly rows: number;
  readonly enqueuedAt: number;
  readonly resolve: (result: JobResult) => void;
  readonly reject: (error: unknown) => void;
}

interface PendingGeneration {
  readonly job: Job;
  readonly resolve: (result: JobResult) => void;
  readonly reject: (error: unknown) => void;
}

/** Runs jobs on one loaded model. Create one per process, after {@link loadModel}. */
export class InferenceEngine {
  /** How the model drives generation jobs, or why it cannot. */
  readonly decoder: DecoderSpec | string;

  private readonly groups = new Map<string, Pending[]>();
  private readonly generations: PendingGeneration[] = [];
  private generationRunning = false;
  private readonly active = new Set<Promise<unknown>>();
  private modelLock: Promise<unknown> = Promise.resolve();
  private pumping = false;
  private timer?: NodeJS.Timeout;
  private closing = false;
  /** Set at shutdown: the jobs that are handed back instead of run (see withdrawWaiting). */
  private withdrawn?: (job: Job) => boolean;
  private unbatchableKeys = 0;

  constructor(
    readonly model: LoadedModel,
    private readonly options: InferenceEngineOptions,
  ) {
    if (!(options.maxBatchSize >= 1)) throw new Error(`maxBatchSize must be at least 1, got ${options.maxBatchSize}`);
    if (!(options.maxBatchWaitMs >= 0)) throw new Error(`maxBatchWaitMs must be 0 or more, got ${options.maxBatchWaitMs}`);
    this.decoder = decoderSpec(model);
  }

  /** Checks a job against the model: input names, element types, shapes, requested outputs. Throws {@link JobRejection}. */
  validate(job: Job): void {
    try {
      if (job.kind === 'generation') this.validateGeneration(job);
      else this.validateInference(job);
    } catch (error) {
      if (error instanceof JobRejection) throw error.withJobId(job.jobId);
      throw error;
    }
  }

  /**
   * Runs a job and resolves with its outputs. Rejects with a {@link JobRejection} when the job does not fit
   * the model, and with any other error when the model call failed (worth retrying).
   */
  run(job: Job): Promise<JobResult> {
    if (this.withdrawn?.(job)) return Promise.reject(new JobWithdrawn());
    if (this.closing) return Promise.reject(new Error('the inference engine is shutting down; the job was not started'));
    try {
      this.validate(job);
    } catch (error) {
      return Promise.reject(error);
    }
    const result = job.kind === 'generation' ? this.enqueueGeneration(job) : this.enqueue(job);
    this.active.add(result);
    const forget = () => this.active.delete(result);
    result.then(forget, forget);
    return result;
  }

  /**
   * For shutdown: rejects with {@link JobWithdrawn} every job that has not started on the model (single-pass jobs
   * waiting for a batch, generation jobs waiting for their turn), and every job run() is given from now on, except
   * those `keep` names: they run as usual, without waiting for a batch to fill. Jobs already running are not
   * touched. Returns how many jobs were withdrawn.
   */
  withdrawWaiting(keep: (job: Job) => boolean = () => false): number {
    const withdraw = (job: Job) => !keep(job);
    this.withdrawn = withdraw;
    const waiting: Array<{ reject: (error: unknown) => void }> = [];

    const keptGenerations = this.generations.filter((pending) => !withdraw(pending.job));
    waiting.push(...this.generations.filter((pending) => withdraw(pending.job)));
    this.generations.splice(0, this.generations.length, ...keptGenerations);
    for (const [key, group] of this.groups) {
      const kept = group.filter((pending) => !withdraw(pending.job));
      waiting.push(...group.filter((pending) => withdraw(pending.job)));
      if (kept.length > 0) this.groups.set(key, kept);
      else this.groups.delete(key);
    }

    for (const pending of waiting) pending.reject(new JobWithdrawn());
    clearTimeout(this.timer);
    this.timer = undefined;
    void this.pump();
    return waiting.length;
  }

  /** Runs every queued job without waiting for batches to fill, waits for all of them, then frees the model. */
  async close(): Promise<void> {
    this.closing = true;
    void this.pump();
    while (this.active.size > 0) await Promise.allSettled([...this.active]);
    clearTimeout(this.timer);
    await this.model.release();
  }

  // --- validation ---------------------------------------------------------------------------------------

  private validateInference(job: Job): void {
    const model = this.model;
    for (const name of job.inputs.keys()) {
      if (!model.inputs.has(name)) {
        throw new JobRejection('unknown_input', `input "${name}" is not an input of the model, which takes ${describeSpecs(model.inputs)}`);
      }
    }

    const named = new Map<string, number>();
    let rows: number | undefined;
    for (const spec of model.inputs.values()) {
      const tensor = job.inputs.get(spec.name);
      if (!tensor) throw new JobRejection('missing_input', `input "${spec.name}" is missing; the model takes ${describeSpecs(model.inputs)}`);
      checkTensor(spec, tensor, named);
      if (model.batchable) {
        rows ??= tensor.dims[0];
        if (tensor.dims[0] !== rows) {
          throw new JobRejection('shape', `input "${spec.name}" has ${tensor.dims[0]} rows on axis 0 but another input has ${rows}; they must agree`);
        }
      }
    }

    for (const name of job.outputs ?? []) {
      if (!model.outputs.has(name)) {
        throw new JobRejection('unknown_output', `output "${name}" is not an output of the model, which gives ${[...model.outputs.keys()].join(', ')}`);
      }
    }
  }

  private validateGeneration(job: Job): void {
    const decoder = this.decoder;
    if (typeof decoder === 'string') throw new JobRejection('job_kind', `this model cannot run generation jobs: ${decoder}`);

    const ids = job.inputs.get(decoder.idsInput);
    if (job.inputs.size !== 1 || !ids) {
      throw new JobRejection('unknown_input', `a generation job sends exactly one input, "${decoder.idsInput}" (INT64 [1, sequence])`);
    }
    if (ids.type !== 'int64' || ids.dims.length !== 2 || ids.dims[0] !== 1 || ids.dims[1] < 1) {
      throw new JobRejection('shape', `input "${decoder.idsInput}" must be INT64 [1, sequence] with sequence ≥ 1; got ${ids.type} [${ids.dims.join(', ')}]`);
    }
    if (job.outputs && job.outputs.some((name) => name !== GENERATED_IDS_OUTPUT)) {
      throw new JobRejection('unknown_output', `a generation job returns only "${GENERATED_IDS_OUTPUT}"`);
    }

    const vocab = decoder.vocabSize;
    const params = job.generation!;
    if (vocab !== null) {
      if (params.stopTokenId !== undefined && params.stopTokenId >= vocab) {
        throw new JobRejection('data', `generation.stopTokenId ${params.stopTokenId} is outside the vocabulary of ${vocab} tokens`);
      }
      const tokens = ids.data as BigInt64Array;
      const limit = BigInt(vocab);
      for (let i = 0; i < tokens.length; i++) {
        if (tokens[i] < 0n || tokens[i] >= limit) {
          throw new JobRejection('data', `input "${decoder.idsInput}" token ${i} is ${tokens[i]}, outside the vocabulary [0, ${vocab})`);
        }
      }
    }
  }

  // --- single-pass jobs: batching -------------------------------------------------------------------------

  private enqueue(job: Job): Promise<JobResult> {
    return new Promise<JobResult>((resolve, reject) => {
      const key = this.batchKey(job);
      const pending: Pending = { job, rows: this.rowsOf(job), enqueuedAt: performance.now(), resolve, reject };
      const group = this.groups.get(key);
      if (group) group.push(pending);
      else this.groups.set(key, [pending]);
      void this.pump();
    });
  }

  // Jobs may share a call when every input agrees on all dimensions after the first; a model without a
  // dynamic batch axis runs each job alone.
  private batchKey(job: Job): string {
    if (!this.model.batchable) return `alone:${this.unbatchableKeys++}`;
    const parts: string[] = [];
    for (const name of this.model.inputs.keys()) parts.push(job.inputs.get(name)!.dims.slice(1).join('x'));
    return parts.join('|');
  }

  private rowsOf(job: Job): number {
    if (!this.model.batchable) return 1;
    const first = job.inputs.values().next().value as Tensor;
    return first.dims[0];
  }

  /** Runs ready batches one after another until none is ready, then sleeps until the next one will be. */
  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.readyGroupKey(performance.now()) !== undefined) {
        // The batch is taken once the model is free, so jobs that arrived meanwhile ride along.
        await this.withModel(async () => {
          const batch = this.takeBatch(performance.now()) ?? [];
          try {
            await this.runBatch(batch);
          } catch (error) {
            for (const pending of batch) pending.reject(error); // no-op for jobs already answered
          }
        });
      }
    } finally {
      this.pumping = false;
      this.armTimer();
    }
  }

  private readyGroupKey(now: number): string | undefined {
    let chosen: string | undefined;
    let oldest = Infinity;
    for (const [key, group] of this.groups) {
      const rows = group.reduce((sum, p) => sum + p.rows, 0);
      const head = group[0].enqueuedAt;
      const ready = this.closing || this.withdrawn !== undefined || rows >= this.options.maxBatchSize || now - head >= this.options.maxBatchWaitMs;
      if (ready && head < oldest) {
        chosen = key;
        oldest = head;
      }
    }
    return chosen;
  }

  private takeBatch(now: number): Pending[] | undefined {
    const key = this.readyGroupKey(now);
    if (key === undefined) return undefined;
    const group = this.groups.get(key)!;

    let rows = group[0].rows;
    let count = 1;
    while (count < group.length && rows + group[count].rows <= this.options.maxBatchSize) rows += group[count++].rows;
    const batch = group.splice(0, count);
    if (group.length === 0) this.groups.delete(key);
    return batch;
  }

  private armTimer(): void {
    if (this.timer || this.pumping || this.groups.size === 0) return;
    let earliest = Infinity;
    for (const group of this.groups.values()) earliest = Math.min(earliest, group[0].enqueuedAt);
    const delay = Math.max(0, earliest + this.options.maxBatchWaitMs - performance.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.pump();
    }, delay);
  }

  private async runBatch(batch: Pending[]): Promise<void> {
    if (batch.length === 0) return;
    const started = performance.now();
    const rows = batch.reduce((sum, p) => sum + p.rows, 0);
    const feeds: Record<string, Tensor> = {};
    for (const name of this.model.inputs.keys()) feeds[name] = concatRows(batch.map((p) => p.job.inputs.get(name)!));

    let outputs: Record<string, Tensor>;
    try {
      outputs = await this.call('inference', batch.length, rows, () => this.model.run(feeds, fetchesOf(batch)));
    } catch (error) {
      // One job's input can make the whole call fail; run the jobs one by one so only that job fails.
      if (batch.length > 1) {
        for (const pending of batch) await this.runBatch([pending]);
      } else {
        batch[0].reject(error);
      }
      return;
    }

    const inferenceMs = performance.now() - started;
    let offset = 0;
    for (const pending of batch) {
      try {
        const own = new Map<string, Tensor>();
        for (const name of pending.job.outputs ?? this.model.outputs.keys()) {
          own.set(name, batch.length === 1 ? outputs[name] : this.rowsFor(outputs[name], name, offset, pending.rows, rows));
        }
        pending.resolve({ outputs: own, batchSize: batch.length, queueMs: started - pending.enqueuedAt, inferenceMs });
      } catch (error) {
        pending.reject(error);
      }
      offset += pending.rows;
    }
  }

  private rowsFor(output: Tensor, name: string, offset: number, rows: number, total: number): Tensor {
    if (output.dims[0] !== total) {
      throw new Error(`output ${name} has ${output.dims[0]} rows for a batch of ${total}; the model's axis 0 is not a batch axis`);
    }
    return sliceRows(output, offset, rows);
  }

  // --- generation jobs ------------------------------------------------------------------------------------

  private enqueueGeneration(job: Job): Promise<JobResult> {
    return new Promise<JobResult>((resolve, reject) => {
      this.generations.push({ job, resolve, reject });
      this.startNextGeneration();
    });
  }

  /** Starts the oldest waiting generation job unless one is running. */
  private startNextGeneration(): void {
    if (this.generationRunning) return;
    const next = this.generations.shift();
    if (!next) return;
    this.generationRunning = true;
    this.runGeneration(next.job)
      .then(next.resolve, next.reject)
      .finally(() => {
        this.generationRunning = false;
        this.startNextGeneration();
      });
  }

  // Known shortcoming: generation jobs are not batched with each other (and run one at a time), so each token
  // costs a model call of one row; under a generation-heavy load the accelerator runs batches of one.
  private async runGeneration(job: Job): Promise<JobResult> {
    const decoder = this.decoder as DecoderSpec;
    const prompt = job.inputs.get(decoder.idsInput)!.data as BigInt64Array;
    let inferenceMs = 0;
    let queueMs = 0;

    // Each step takes its turn on the model, so batches and other generations interleave with this one.
    const result = await generate(prompt, job.generation!, async (tokens) => {
      const waiting = performance.now();
      return this.withModel(async () => {
        const started = performance.now();
        queueMs += started - waiting;
        const outputs = await this.call('generation', 1, 1, () => this.model.run(decoderFeeds(decoder, tokens), [decoder.logitsOutput]));
        inferenceMs += performance.now() - started;
        const logits = outputs[decoder.logitsOutput];
        const vocab = logits.dims[2];
        return (logits.data as Float32Array).subarray((tokens.length - 1) * vocab, tokens.length * vocab);
      });
    });

    const generated = new Tensor('int64', result.tokens, [1, result.tokens.length]);
    return {
      outputs: new Map([[GENERATED_IDS_OUTPUT, generated]]),
      batchSize: 1,
      queueMs,
      inferenceMs,
      generation: {
        finishReason: result.finishReason,
        newTokens: result.tokens.length,
        ...(result.seed !== undefined ? { seed: result.seed } : {}),
      },
    };
  }

  // --- the model ------------------------------------------------------------------------------------------

  /**
   * Runs `fn` when no other model call is running; calls run strictly one at a time.
   *
   * onnxruntime-node 1.30 runs `session.run` on the main thread: while a call runs, the event loop reads no
   * delivery, sends no ack and answers no probe (measured by the worker benchmark). So a call that hangs (a
   * wedged GPU) stops `/healthz` too, and the liveness probe restarts the pod; its unacked jobs are redelivered.
   *
   * Known shortcoming: the model call blocks the event loop, so on a GPU the broker round trips of one batch do
   * not overlap the next model call; a worker thread owning the session would let them (it gained nothing on
   * this CPU-only machine, where both compete for the same cores). A call slower than the liveness window
   * (a very large batch) would be mistaken for a hang: size the probe's failure threshold for it.
   */
  private withModel<T>(fn: () => Promise<T>): Promise<T> {
    const turn = this.modelLock.then(fn);
    this.modelLock = turn.catch(() => undefined);
    return turn;
  }

  private async call<T>(kind: ModelCall['kind'], jobs: number, rows: number, fn: () => Promise<T>): Promise<T> {
    const started = performance.now();
    let ok = false;
    try {
      const result = await fn();
      ok = true;
      return result;
    } finally {
      const seconds = (performance.now() - started) / 1000;
      this.options.onModelCall?.(jobs, seconds, { kind, jobs, rows, seconds, ok });
    }
  }
}

function checkTensor(spec: TensorSpec, tensor: Tensor, named: Map<string, number>): void {
  if (tensor.type !== spec.type) {
    throw new JobRejection('datatype', `input "${spec.name}" is ${datatypeName(tensor)}; the model takes ${spec.datatype}`);
  }
  // An empty shape in the metadata means the model does not declare one; onnxruntime checks it at run time.
  if (spec.shape.length === 0) return;

  const expected = describeShape(spec);
  if (tensor.dims.length !== spec.shape.length) {
    throw new JobRejection('shape', `input "${spec.name}" has shape [${tensor.dims.join(', ')}]; the model takes ${expected}`);
  }
  spec.shape.forEach((size, axis) => {
    const actual = tensor.dims[axis];
    if (size !== null && actual !== size) {
      throw new JobRejection('shape', `input "${spec.name}" has shape [${tensor.dims.join(', ')}]; the model takes ${expected} (axis ${axis} must be ${size})`);
    }
    // A symbolic name shared by several inputs (e.g. "sequence") must mean one size within a job.
    const dimName = spec.dimNames[axis];
    if (size === null && dimName !== null && axis > 0) {
      const seen = named.get(dimName);
      if (seen !== undefined && seen !== actual) {
        throw new JobRejection('shape', `input "${spec.name}" axis ${axis} (${dimName}) is ${actual}, but ${dimName} is ${seen} in another input`);
      }
      named.set(dimName, actual);
    }
  });
}

function fetchesOf(batch: Pending[]): string[] | undefined {
  const names = new Set<string>();
  for (const { job } of batch) {
    if (!job.outputs) return undefined;
    job.outputs.forEach((name) => names.add(name));
  }
  return [...names];
}

function decoderFeeds(decoder: DecoderSpec, tokens: BigInt64Array): Record<string, Tensor> {
  const dims = [1, tokens.length];
  const feeds: Record<string, Tensor> = { [decoder.idsInput]: new Tensor('int64', tokens, dims) };
  if (decoder.maskInput) feeds[decoder.maskInput] = new Tensor('int64', new BigInt64Array(tokens.length).fill(1n), dims);
  if (decoder.positionInput) {
    feeds[decoder.positionInput] = new Tensor('int64', BigInt64Array.from({ length: tokens.length }, (_, i) => BigInt(i)), dims);
  }
  return feeds;
}

function describeSpecs(specs: ReadonlyMap<string, TensorSpec>): string {
  return [...specs.values()].map((s) => `"${s.name}" (${s.datatype} ${describeShape(s)})`).join(', ');
}

function describeShape(spec: TensorSpec): string {
  return `[${spec.shape.map((size, axis) => size ?? spec.dimNames[axis] ?? '?').join(', ')}]`;
}

function datatypeName(tensor: Tensor): string {
  return datatypeOf(tensor.type) ?? tensor.type;
}
