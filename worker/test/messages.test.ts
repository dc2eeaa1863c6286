import { Tensor } from 'onnxruntime-node';
import { JobRejection } from '../src/errors';
import {
  AIGenerationJobCompletedSchema,
  AIGenerationJobFailedSchema,
  AIGenerationJobRequested,
  BINARY_JOB_HEADER,
  JobMessageProperties,
  jobCompleted,
  jobFailed,
  parseJob,
} from '../src/messages';

const limits = { maxMessageBytes: 1024 * 1024 };
const jsonProps: JobMessageProperties = { contentType: 'application/json', type: 'AIGenerationJobRequested', messageId: 'm-1' };

function job(overrides: Partial<AIGenerationJobRequested> = {}): AIGenerationJobRequested {
  return {
    schemaVersion: 1,
    jobId: 'job-1',
    inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }],
    ...overrides,
  };
}

function parse(body: unknown, props: JobMessageProperties = jsonProps) {
  return parseJob(Buffer.from(typeof body === 'string' ? body : JSON.stringify(body)), props, limits);
}

function rejection(fn: () => unknown): JobRejection {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(JobRejection);
    return error as JobRejection;
  }
  throw new Error('expected a JobRejection, nothing was thrown');
}

describe('parseJob: valid jobs', () => {
  test('JSON numbers become a typed tensor, results default to JSON', () => {
    const parsed = parse(job());
    const input = parsed.inputs.get('input')!;
    expect(input.type).toBe('float32');
    expect(input.dims).toEqual([1, 4]);
    expect(Array.from(input.data as Float32Array)).toEqual([1, 2, 3, 4]);
    expect(parsed.kind).toBe('inference');
    expect(parsed.outputEncoding).toBe('json');
    expect(parsed.generation).toBeUndefined();
  });

  test('base64 bytes are viewed as the datatype, results default to base64', () => {
    const values = new Float32Array([0.5, -1.25, 3, 1e-3]);
    const base64 = Buffer.from(values.buffer).toString('base64');
    const parsed = parse(job({ inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], base64 }] }));
    expect(Array.from(parsed.inputs.get('input')!.data as Float32Array)).toEqual(Array.from(values));
    expect(parsed.outputEncoding).toBe('base64');
  });

  test('INT64 from JSON numbers is a BigInt64Array', () => {
    const parsed = parse(job({ inputs: [{ name: 'ids', datatype: 'INT64', shape: [1, 3], data: [1, 2, 9007199254740991] }] }));
    expect(Array.from(parsed.inputs.get('ids')!.data as BigInt64Array)).toEqual([1n, 2n, 9007199254740991n]);
  });

  test('binary body: tensors back to back, description in the header (string or table)', () => {
    const a = new Float32Array([1, 2, 3, 4, 5, 6]);
    const b = new BigInt64Array([7n, 8n]);
    const body = Buffer.concat([Buffer.from(a.buffer), Buffer.from(b.buffer)]);
    const header = {
      schemaVersion: 1,
      jobId: 'bin-1',
      inputs: [
        { name: 'a', datatype: 'FP32', shape: [1, 2, 3] },
        { name: 'b', datatype: 'INT64', shape: [2] },
      ],
    };
    for (const value of [JSON.stringify(header), header]) {
      const parsed = parseJob(body, { contentType: 'application/octet-stream', headers: { [BINARY_JOB_HEADER]: value } }, limits);
      expect(parsed.jobId).toBe('bin-1');
      expect(Array.from(parsed.inputs.get('a')!.data as Float32Array)).toEqual([1, 2, 3, 4, 5, 6]);
      expect(Array.from(parsed.inputs.get('b')!.data as BigInt64Array)).toEqual([7n, 8n]);
      expect(parsed.outputEncoding).toBe('base64');
    }
  });

  test('a binary body at an odd offset is copied into alignment, not misread', () => {
    const values = new Float32Array([1.5, 2.5]);
    const backing = Buffer.alloc(9);
    Buffer.from(values.buffer).copy(backing, 1);
    const body = backing.subarray(1);
    const header = JSON.stringify({ schemaVersion: 1, jobId: 'odd', inputs: [{ name: 'x', datatype: 'FP32', shape: [2] }] });
    const parsed = parseJob(body, { contentType: 'application/octet-stream', headers: { [BINARY_JOB_HEADER]: header } }, limits);
    expect(Array.from(parsed.inputs.get('x')!.data as Float32Array)).toEqual([1.5, 2.5]);
  });

  test('generation jobs get default parameters', () => {
    const parsed = parse(job({ kind: 'generation', inputs: [{ name: 'input_ids', datatype: 'INT64', shape: [1, 2], data: [1, 2] }] }));
    expect(parsed.generation).toEqual({ maxNewTokens: 16, temperature: 0, topK: 0 });
  });

  test('absent content type and a charset parameter are both read as JSON', () => {
    expect(parse(job(), {}).jobId).toBe('job-1');
    expect(parse(job(), { contentType: 'application/json; charset=utf-8' }).jobId).toBe('job-1');
  });
});

describe('parseJob: every bad input is a JobRejection with a precise reason', () => {
  test('malformed JSON names the body and falls back to the AMQP message id', () => {
    const r = rejection(() => parse('{"schemaVersion": 1, "jobId": '));
    expect(r.code).toBe('malformed_json');
    expect(r.reason).toMatch(/^message body is not valid JSON/);
    expect(r.jobId).toBe('m-1');
  });

  test('oversize body names the size and the limit', () => {
    const r = rejection(() => parseJob(Buffer.alloc(2048), jsonProps, { maxMessageBytes: 1024 }));
    expect(r.code).toBe('oversize');
    expect(r.reason).toContain('2048 bytes, over the limit of 1024 (MAX_MESSAGE_BYTES)');
  });

  test('schema violations name the path', () => {
    const r = rejection(() => parse(job({ inputs: [{ name: 'input', datatype: 'FP33' as never, shape: [1, 4], data: [1, 2, 3, 4] }] })));
    expect(r.code).toBe('schema');
    expect(r.reason).toMatch(/^inputs\[0\]\.datatype: /);
    expect(r.jobId).toBe('job-1');
  });

  test('unknown fields are refused so a typo never changes a job silently', () => {
    const r = rejection(() => parse({ ...job({ kind: 'generation' }), generation: { maxNewToken: 3 } }));
    expect(r.reason).toContain('generation');
    expect(r.reason).toContain('maxNewToken');
  });

  test('both or neither of data and base64', () => {
    const both = rejection(() => parse(job({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1], data: [1], base64: 'AACAPw==' }] })));
    expect(both.reason).toContain('inputs[0]: give exactly one of data');
    const neither = rejection(() => parse(job({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1] }] })));
    expect(neither.reason).toContain('inputs[0]: give exactly one of data');
  });

  test('a newer schema version says so instead of listing fields', () => {
    const r = rejection(() => parse({ ...job(), schemaVersion: 2, somethingNew: true }));
    expect(r.code).toBe('unsupported_version');
    expect(r.reason).toBe('schemaVersion 2 is not supported by this worker, which reads version 1');
  });

  test('element count must match the shape', () => {
    const r = rejection(() => parse(job({ inputs: [{ name: 'input', datatype: 'FP32', shape: [2, 4], data: [1, 2, 3, 4] }] })));
    expect(r.code).toBe('data');
    expect(r.reason).toBe('inputs[0] (input).data has 4 elements; shape [2, 4] needs 8');
    expect(r.jobId).toBe('job-1');
  });

  test('integers must be integers in range', () => {
    const r = rejection(() => parse(job({ inputs: [{ name: 'ids', datatype: 'UINT8', shape: [2], data: [3, 256] }] })));
    expect(r.reason).toBe('inputs[0] (ids).data[1] is 256, not a UINT8 value (an integer in [0, 255])');
    const f = rejection(() => parse(job({ inputs: [{ name: 'ids', datatype: 'INT64', shape: [1], data: [1.5] }] })));
    expect(f.reason).toContain('data[0] is 1.5, not a INT64 value');
  });

  test('base64 that decodes to the wrong size, or is not base64', () => {
    const short = rejection(() => parse(job({ inputs: [{ name: 'x', datatype: 'FP32', shape: [2], base64: 'AACAPw==' }] })));
    expect(short.reason).toBe('inputs[0] (x) has 4 bytes of data; shape [2] of FP32 needs 8');
    const junk = rejection(() => parse(job({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1], base64: 'AAC!APw==' }] })));
    expect(junk.reason).toContain('inputs[0] (x).base64 is not valid base64');
  });

  test('binary body whose length does not match the header', () => {
    const header = JSON.stringify({ schemaVersion: 1, jobId: 'bin-2', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3, 2, 2] }] });
    const r = rejection(() => parseJob(Buffer.alloc(40), { contentType: 'application/octet-stream', headers: { [BINARY_JOB_HEADER]: header } }, limits));
    expect(r.reason).toBe('binary body is 40 bytes; the inputs in header ai-job need 48 (x 48)');
    expect(r.jobId).toBe('bin-2');
  });

  test('binary body without its header', () => {
    const r = rejection(() => parseJob(Buffer.alloc(4), { contentType: 'application/octet-stream', messageId: 'm-9' }, limits));
    expect(r.reason).toContain('"ai-job" header');
    expect(r.jobId).toBe('m-9');
  });

  test('wrong content type, encoding or AMQP type', () => {
    expect(rejection(() => parse(job(), { contentType: 'text/plain' })).reason).toContain('content type "text/plain" is not supported');
    expect(rejection(() => parse(job(), { contentEncoding: 'gzip' })).code).toBe('content_type');
    expect(rejection(() => parse(job(), { type: 'SomethingElse' })).reason).toContain('this queue takes only "AIGenerationJobRequested"');
  });

  test('duplicate input names', () => {
    const input = { name: 'x', datatype: 'FP32' as const, shape: [1], data: [1] };
    expect(rejection(() => parse(job({ inputs: [input, input] }))).reason).toBe('inputs[1] (x): input "x" is given twice');
  });

  test('generation parameters on an inference job, and out-of-range parameters', () => {
    expect(rejection(() => parse(job({ generation: { maxNewTokens: 3 } }))).reason).toContain('generation: generation parameters are only allowed');
    const r = rejection(() => parse(job({ kind: 'generation', generation: { maxNewTokens: 0 } })));
    expect(r.reason).toMatch(/^generation\.maxNewTokens: /);
  });

  test('a shape too large to exist is refused before anything is allocated', () => {
    const r = rejection(() => parse(job({ inputs: [{ name: 'x', datatype: 'FP64', shape: [65536, 65536, 2], base64: '' }] })));
    expect(r.code).toBe('oversize');
  });
});

describe('result messages', () => {
  test('completed: outputs encoded as the job asked, valid against the schema', () => {
    const parsed = parse(job());
    const outputs = new Map<string, Tensor>([
      ['logits', new Tensor('float32', new Float32Array([0.5, 1.5]), [1, 2])],
      ['ids', new Tensor('int64', new BigInt64Array([3n]), [1])],
    ]);
    const message = jobCompleted(parsed, { outputs, batchSize: 2, queueMs: 1, inferenceMs: 3 }, 'worker-a', 7);
    expect(AIGenerationJobCompletedSchema.parse(message)).toEqual(message);
    expect(message.outputs).toEqual([
      { name: 'logits', datatype: 'FP32', shape: [1, 2], data: [0.5, 1.5] },
      { name: 'ids', datatype: 'INT64', shape: [1], data: [3] },
    ]);
    expect(message.timings).toEqual({ totalMs: 7, decodeMs: parsed.decodeMs, queueMs: 1, inferenceMs: 3, batchSize: 2 });

    const b64 = jobCompleted({ ...parsed, outputEncoding: 'base64' }, { outputs, batchSize: 1, queueMs: 0, inferenceMs: 1 }, 'w', 1);
    const first = b64.outputs[0] as { base64: string };
    expect(new Float32Array(new Uint8Array(Buffer.from(first.base64, 'base64')).buffer)).toEqual(new Float32Array([0.5, 1.5]));
  });

  test('failed: a rejection is not retryable and keeps its code; other errors are', () => {
    const r = rejection(() => parse('nope'));
    const failed = jobFailed(undefined, r, 'worker-a');
    expect(AIGenerationJobFailedSchema.parse(failed)).toEqual(failed);
    expect(failed).toMatchObject({ jobId: 'm-1', code: 'malformed_json', retryable: false });

    expect(jobFailed('job-9', new Error('CUDA out of memory'), 'w')).toMatchObject({
      jobId: 'job-9',
      code: 'inference_error',
      reason: 'CUDA out of memory',
      retryable: true,
    });
    expect(jobFailed(undefined, new Error('x'), 'w').jobId).toBeNull();
  });
});
