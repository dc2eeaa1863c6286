import { TestModelFacts, ensureTestModels } from '../scripts/build-test-models';
import { JobRejection } from '../src/errors';
import { GENERATED_IDS_OUTPUT, argmax, decoderSpec, generate, mulberry32, sample } from '../src/generation';
import { InferenceEngine, ModelCall } from '../src/inference';
import { AIGenerationJobRequested, GenerationParams, Job, parseJob } from '../src/messages';
import { loadModel } from '../src/model';

const models = ensureTestModels();
const { vocabSize, stopTokenId } = TestModelFacts.decoder;

function generationJob(jobId: string, prompt: number[], generation: AIGenerationJobRequested['generation'] = {}): Job {
  const body: AIGenerationJobRequested = {
    schemaVersion: 1,
    jobId,
    kind: 'generation',
    inputs: [{ name: 'input_ids', datatype: 'INT64', shape: [1, prompt.length], data: prompt }],
    generation,
  };
  return parseJob(Buffer.from(JSON.stringify(body)), { contentType: 'application/json' }, { maxMessageBytes: 1 << 20 });
}

const tokensOf = (result: { outputs: ReadonlyMap<string, { data: unknown }> }) =>
  Array.from(result.outputs.get(GENERATED_IDS_OUTPUT)!.data as BigInt64Array, Number);

describe('generation on the bigram decoder (greedy continuation of t is t+1)', () => {
  let engine: InferenceEngine;
  const calls: ModelCall[] = [];

  beforeAll(async () => {
    const model = await loadModel(models.decoder, 'cpu');
    engine = new InferenceEngine(model, { maxBatchSize: 8, maxBatchWaitMs: 5, onModelCall: (_j, _s, call) => calls.push(call) });
  });
  afterAll(() => engine.close());

  test('the model is recognised as a decoder', () => {
    expect(engine.decoder).toEqual({ idsInput: 'input_ids', logitsOutput: 'logits', vocabSize, maskInput: undefined, positionInput: undefined });
  });

  test('greedy decoding counts upwards and stops at maxNewTokens', async () => {
    calls.splice(0);
    const result = await engine.run(generationJob('greedy', [1, 2, 3], { maxNewTokens: 5 }));
    expect(tokensOf(result)).toEqual([4, 5, 6, 7, 8]);
    expect(result.outputs.get(GENERATED_IDS_OUTPUT)!.dims).toEqual([1, 5]);
    expect(result.generation).toEqual({ finishReason: 'max_new_tokens', newTokens: 5 });
    expect(calls).toHaveLength(5);
    expect(calls.every((c) => c.kind === 'generation' && c.jobs === 1 && c.ok)).toBe(true);
  });

  test('greedy decoding is deterministic', async () => {
    const runs = await Promise.all([1, 2, 3].map((i) => engine.run(generationJob(`det-${i}`, [9], { maxNewTokens: 4 }))));
    expect(runs.map(tokensOf)).toEqual([
      [10, 11, 12, 13],
      [10, 11, 12, 13],
      [10, 11, 12, 13],
    ]);
  });

  test('the stop token ends generation and is included', async () => {
    const result = await engine.run(generationJob('stop', [12], { maxNewTokens: 10, stopTokenId }));
    expect(tokensOf(result)).toEqual([13, 14, 15]);
    expect(result.generation).toEqual({ finishReason: 'stop_token', newTokens: 3 });
  });

  test('sampling with a fixed seed repeats exactly, and reports the seed', async () => {
    const params = { maxNewTokens: 12, temperature: 1.5, seed: 1234 };
    const first = await engine.run(generationJob('seeded-1', [0], params));
    const second = await engine.run(generationJob('seeded-2', [0], params));
    expect(tokensOf(second)).toEqual(tokensOf(first));
    expect(first.generation).toEqual({ finishReason: 'max_new_tokens', newTokens: 12, seed: 1234 });

    // Pinned: a change of sampler or generator shows up here, not as a silent change of every seeded job.
    // At this temperature the noise logits often win, so sampling leaves the greedy path (1, 2, 3, ...).
    expect(tokensOf(first)).toEqual([1, 10, 13, 15, 0, 1, 2, 11, 8, 2, 4, 5]);
    const other = await engine.run(generationJob('seeded-3', [0], { ...params, seed: 99 }));
    expect(tokensOf(other)).not.toEqual(tokensOf(first));
  });

  test('without a seed the worker picks one and reports it, so the run can be repeated', async () => {
    const free = await engine.run(generationJob('free', [4], { maxNewTokens: 6, temperature: 1 }));
    const seed = free.generation!.seed!;
    expect(Number.isInteger(seed)).toBe(true);
    const again = await engine.run(generationJob('again', [4], { maxNewTokens: 6, temperature: 1, seed }));
    expect(tokensOf(again)).toEqual(tokensOf(free));
  });

  test('topK 1 is greedy whatever the temperature', async () => {
    const result = await engine.run(generationJob('top1', [5], { maxNewTokens: 4, temperature: 5, topK: 1, seed: 7 }));
    expect(tokensOf(result)).toEqual([6, 7, 8, 9]);
  });

  describe('bad generation jobs are rejected with a precise reason', () => {
    const rejection = (job: Job) => {
      try {
        engine.validate(job);
      } catch (error) {
        expect(error).toBeInstanceOf(JobRejection);
        return error as JobRejection;
      }
      throw new Error('expected a JobRejection');
    };

    test('token outside the vocabulary', () => {
      const r = rejection(generationJob('vocab', [1, 16]));
      expect(r.reason).toBe('input "input_ids" token 1 is 16, outside the vocabulary [0, 16)');
      expect(r.jobId).toBe('vocab');
    });

    test('stop token outside the vocabulary', () => {
      expect(rejection(generationJob('stop-vocab', [1], { stopTokenId: 50 })).reason).toBe(
        'generation.stopTokenId 50 is outside the vocabulary of 16 tokens',
      );
    });

    test('more than one sequence, or another input', () => {
      const two = parseJob(
        Buffer.from(
          JSON.stringify({
            schemaVersion: 1,
            jobId: 'two',
            kind: 'generation',
            inputs: [{ name: 'input_ids', datatype: 'INT64', shape: [2, 1], data: [1, 2] }],
          }),
        ),
        {},
        { maxMessageBytes: 1 << 20 },
      );
      expect(rejection(two).reason).toBe('input "input_ids" must be INT64 [1, sequence] with sequence ≥ 1; got int64 [2, 1]');
    });

    test('asking for an output other than generated_ids', () => {
      const job = { ...generationJob('out', [1]), outputs: ['logits'] };
      expect(rejection(job).reason).toBe('a generation job returns only "generated_ids"');
    });
  });
});

describe('generate() and sampling, without a model', () => {
  const params = (p: Partial<GenerationParams>): GenerationParams => ({ maxNewTokens: 3, temperature: 0, topK: 0, ...p });

  test('feeds the growing sequence and returns only new tokens', async () => {
    const seen: number[][] = [];
    const result = await generate(BigInt64Array.from([7n]), params({}), async (tokens) => {
      seen.push(Array.from(tokens, Number));
      const logits = new Float32Array(4);
      logits[tokens.length % 4] = 1;
      return logits;
    });
    expect(seen).toEqual([[7], [7, 1], [7, 1, 2]]);
    expect(Array.from(result.tokens, Number)).toEqual([1, 2, 3]);
    expect(result.seed).toBeUndefined();
  });

  test('argmax takes the first of equal maxima', () => {
    expect(argmax(Float32Array.from([1, 3, 3, 2]))).toBe(1);
  });

  test('top-k never draws outside the k most likely tokens', () => {
    const random = mulberry32(5);
    const logits = Float32Array.from([0, 10, 9.5, -5, 9.8]);
    const drawn = new Set(Array.from({ length: 300 }, () => sample(logits, 10, 2, random)));
    expect([...drawn].sort()).toEqual([1, 4]);
  });

  test('a high temperature spreads draws over every token; a low one concentrates them', () => {
    const random = mulberry32(11);
    const logits = Float32Array.from([1, 2, 3]);
    const hot = new Set(Array.from({ length: 300 }, () => sample(logits, 100, 0, random)));
    expect(hot.size).toBe(3);
    const cold = new Set(Array.from({ length: 300 }, () => sample(logits, 0.01, 0, random)));
    expect([...cold]).toEqual([2]);
  });

  test('decoderSpec explains why a model is not a decoder', () => {
    const spec = {
      inputs: new Map([['x', { name: 'x', type: 'float32' as const, datatype: 'FP32' as const, shape: [null, 4], dimNames: ['b', null] }]]),
      outputs: new Map(),
    };
    expect(decoderSpec(spec)).toBe('input x is FP32 of rank 2; a decoder takes only int64 [batch, sequence] inputs');
  });
});
