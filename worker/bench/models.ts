/**
 * The two models the benchmark runs, and the job messages it sends them.
 *
 * Every stage of the benchmark (broker limit, inference limit, worker) uses the same messages and the same
 * input tensors, so that the three numbers of a model are comparable.
 */
import { resolve } from 'path';
import type { Options } from 'amqplib';
import { MessageType, WORKER_DEFAULTS } from '../src/contract';
import {
  AIGenerationJobRequested,
  AIGenerationJobRequestedBinaryHeader,
  BINARY_CONTENT_TYPE,
  BINARY_JOB_HEADER,
  JSON_CONTENT_TYPE,
  SCHEMA_VERSION,
} from '../src/messages';

/** How one benchmarked model is fed. */
export interface BenchModel {
  /** Short key used in the report and the results file. */
  readonly key: 'mlp' | 'detection';
  readonly description: string;
  readonly path: string;
  readonly inputName: string;
  /** Shape of one job's input, batch axis included (always 1). */
  readonly inputShape: readonly number[];
  /** One job's input elements, float32. */
  readonly input: Float32Array;
  /** How the job carries its tensor: JSON numbers or a binary body. */
  readonly encoding: 'json' | 'binary';
  /** Which limit the model is expected to hit first; the other one is measured too. */
  readonly boundBy: 'broker' | 'inference';
}

const WORKER_DIR = resolve(__dirname, '..');

/** The small MLP from scripts/build-test-models.ts: input float32 [batch, 4]. Tiny, so the broker is the limit. */
export function mlpModel(): BenchModel {
  return {
    key: 'mlp',
    description: 'test MLP (float32 [batch,4] → [batch,3]; JSON numbers)',
    path: resolve(WORKER_DIR, 'models', 'mlp.onnx'),
    inputName: 'input',
    inputShape: [1, 4],
    input: Float32Array.from([0.25, -1.5, 3, 0.75]),
    encoding: 'json',
    boundBy: 'broker',
  };
}

/** PP-OCRv4 text detection at 320×320: input `x` float32 [batch, 3, H, W]. The model is the limit. */
export function detectionModel(): BenchModel {
  const size = 320;
  return {
    key: 'detection',
    description: `PP-OCRv4 text detection (float32 [batch,3,${size},${size}]; binary body)`,
    path: resolve(WORKER_DIR, 'node_modules', '@gutenye', 'ocr-models', 'assets', 'ch_PP-OCRv4_det_infer.onnx'),
    inputName: 'x',
    inputShape: [1, 3, size, size],
    input: syntheticPage(size),
    encoding: 'binary',
    boundBy: 'inference',
  };
}

/**
 * A normalized 320×320 RGB "page": light background with dark horizontal strokes where text lines would be.
 * Convolutional cost does not depend on the pixels, but a plausible image keeps the output realistic too.
 */
function syntheticPage(size: number): Float32Array {
  // PaddleOCR's detection preprocessing: ImageNet mean and std per channel on [0, 1] pixels.
  const mean = [0.485, 0.456, 0.406];
  const std = [0.229, 0.224, 0.225];
  const data = new Float32Array(3 * size * size);
  for (let y = 0; y < size; y++) {
    const inLine = y % 40 >= 12 && y % 40 < 28;
    for (let x = 0; x < size; x++) {
      const ink = inLine && x > 24 && x < size - 24 && (x * 7 + y) % 11 < 6;
      const pixel = ink ? 0.1 : 0.92;
      for (let c = 0; c < 3; c++) data[c * size * size + y * size + x] = (pixel - mean[c]) / std[c];
    }
  }
  return data;
}

/** One job message ready to publish: body and AMQP properties, as a producer sends it. */
export interface JobMessage {
  readonly jobId: string;
  readonly content: Buffer;
  readonly options: Options.Publish;
}

/** Header the harness stamps on each job: when it was published (ms since the epoch, fractional). */
export const PUBLISHED_AT_HEADER = 'bench-published-at';

/** Builds job `jobId` for `model`, encoded the way that model's producers would send it. */
export function jobMessage(model: BenchModel, jobId: string): JobMessage {
  const datatype = 'FP32' as const;
  const bytes = Buffer.from(model.input.buffer, model.input.byteOffset, model.input.byteLength);
  const common: Options.Publish = {
    type: MessageType.jobRequested,
    messageId: jobId,
    // The worker copies the correlation id onto the result, so results are matched without parsing them.
    correlationId: jobId,
    persistent: true,
  };

  if (model.encoding === 'binary') {
    const header: AIGenerationJobRequestedBinaryHeader = {
      schemaVersion: SCHEMA_VERSION,
      jobId,
      kind: 'inference',
      inputs: [{ name: model.inputName, datatype, shape: [...model.inputShape] }],
    };
    return {
      jobId,
      content: bytes,
      options: { ...common, contentType: BINARY_CONTENT_TYPE, headers: { [BINARY_JOB_HEADER]: JSON.stringify(header) } },
    };
  }

  const job: AIGenerationJobRequested = {
    schemaVersion: SCHEMA_VERSION,
    jobId,
    kind: 'inference',
    inputs: [{ name: model.inputName, datatype, shape: [...model.inputShape], data: Array.from(model.input) }],
  };
  return { jobId, content: Buffer.from(JSON.stringify(job)), options: { ...common, contentType: JSON_CONTENT_TYPE } };
}

/** The worker's default largest batch: the batch size the inference limit is also measured at. */
export const DEFAULT_MAX_BATCH = WORKER_DEFAULTS.maxBatchSize;
