/**
 * Autoregressive generation for decoder models that map token ids [batch, sequence] (int64) to logits
 * [batch, sequence, vocabulary]: feed the sequence, pick the next token from the last position's logits,
 * append it, repeat until the stop token or the token limit.
 *
 * Known shortcoming: the whole sequence is fed again at every step (no key/value cache), so a step costs
 * more as the sequence grows and long generations are quadratic. Models that take past key/values as
 * inputs are refused by {@link decoderSpec} rather than run wrongly.
 */
import { randomInt } from 'crypto';
import type { GenerationParams } from './messages';
import type { LoadedModel } from './model';

/** Name of the output that carries the generated token ids, [1, newTokens] INT64, in a generation result. */
export const GENERATED_IDS_OUTPUT = 'generated_ids';

/** How to drive a decoder model: which input takes the ids, which inputs the worker fills, where the logits are. */
export interface DecoderSpec {
  readonly idsInput: string;
  /** An `attention_mask` input, filled with ones (one unpadded sequence per call). */
  readonly maskInput?: string;
  /** A `position_ids` input, filled with 0 … length-1. */
  readonly positionInput?: string;
  readonly logitsOutput: string;
  /** Vocabulary size when the model fixes it; token ids are checked against it. */
  readonly vocabSize: number | null;
}

/**
 * Reads a decoder's inputs and outputs from its metadata, or says in words why the model cannot run
 * generation jobs.
 */
export function decoderSpec(model: Pick<LoadedModel, 'inputs' | 'outputs'>): DecoderSpec | string {
  let idsInput: string | undefined;
  let maskInput: string | undefined;
  let positionInput: string | undefined;

  for (const spec of model.inputs.values()) {
    if (spec.datatype !== 'INT64' || spec.shape.length !== 2) {
      return `input ${spec.name} is ${spec.datatype} of rank ${spec.shape.length}; a decoder takes only int64 [batch, sequence] inputs`;
    }
    if (spec.shape[1] !== null) return `input ${spec.name} has a fixed sequence length of ${spec.shape[1]}, so it cannot grow`;
    if (spec.name === 'attention_mask') maskInput = spec.name;
    else if (spec.name === 'position_ids') positionInput = spec.name;
    else if (idsInput === undefined) idsInput = spec.name;
    else return `inputs ${idsInput} and ${spec.name} both look like token ids; the worker can fill only attention_mask and position_ids`;
  }
  if (idsInput === undefined) return 'the model has no token id input';

  const logits = model.outputs.get('logits') ?? model.outputs.values().next().value;
  if (logits === undefined || logits.datatype !== 'FP32' || logits.shape.length !== 3) {
    return 'the model has no float32 [batch, sequence, vocabulary] logits output';
  }
  return { idsInput, maskInput, positionInput, logitsOutput: logits.name, vocabSize: logits.shape[2] };
}

/** Returns the logits of the last position (length: vocabulary) for a sequence of token ids. */
export type NextTokenLogits = (tokens: BigInt64Array) => Promise<Float32Array>;

/** What a generation produced. */
export interface Generation {
  /** The new tokens only, without the prompt; ends with the stop token when that ended it. */
  readonly tokens: BigInt64Array;
  readonly finishReason: 'stop_token' | 'max_new_tokens';
  /** The sampler's seed; undefined for greedy decoding. */
  readonly seed?: number;
}

/**
 * Generates up to `params.maxNewTokens` tokens after `prompt`. Greedy when `temperature` is 0, otherwise
 * samples from the softmax of logits / temperature, restricted to the `topK` most likely tokens when set,
 * with a seeded generator: the same prompt, parameters and seed always give the same tokens.
 */
export async function generate(prompt: BigInt64Array, params: GenerationParams, nextLogits: NextTokenLogits): Promise<Generation> {
  const greedy = params.temperature === 0;
  const seed = greedy ? undefined : (params.seed ?? randomInt(0, 2 ** 32));
  const random = seed === undefined ? undefined : mulberry32(seed);
  const stop = params.stopTokenId === undefined ? undefined : BigInt(params.stopTokenId);

  const sequence = new BigInt64Array(prompt.length + params.maxNewTokens);
  sequence.set(prompt);
  let length = prompt.length;

  for (let step = 0; step < params.maxNewTokens; step++) {
    const logits = await nextLogits(sequence.subarray(0, length));
    const token = random ? sample(logits, params.temperature, params.topK, random) : argmax(logits);
    sequence[length++] = BigInt(token);
    if (stop !== undefined && BigInt(token) === stop) {
      return { tokens: sequence.slice(prompt.length, length), finishReason: 'stop_token', seed };
    }
  }
  return { tokens: sequence.slice(prompt.length, length), finishReason: 'max_new_tokens', seed };
}

/** Index of the largest value; the first one on ties. */
export function argmax(values: Float32Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

/** Draws a token from softmax(logits / temperature) over the `topK` largest logits (all when 0). */
export function sample(logits: Float32Array, temperature: number, topK: number, random: () => number): number {
  // Logits below the k-th largest are left out; ties at the threshold stay in.
  let threshold = -Infinity;
  if (topK > 0 && topK < logits.length) threshold = Float32Array.from(logits).sort()[logits.length - topK];

  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] >= threshold && logits[i] > max) max = logits[i];

  const weights = new Float64Array(logits.length);
  let total = 0;
  for (let i = 0; i < logits.length; i++) {
    if (logits[i] < threshold) continue;
    weights[i] = Math.exp((logits[i] - max) / temperature);
    total += weights[i];
  }

  let target = random() * total;
  let last = 0;
  for (let i = 0; i < logits.length; i++) {
    if (weights[i] === 0) continue;
    last = i;
    target -= weights[i];
    if (target < 0) return i;
  }
  return last; // rounding left a sliver of `target`: the last candidate takes it
}

/** mulberry32: a small, fast 32-bit generator; plenty for sampling, not for secrets. */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
