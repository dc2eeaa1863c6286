/**
 * Tensors between the wire and onnxruntime.
 *
 * On the wire a tensor is named, typed with an Open Inference Protocol datatype (`FP32`, `INT64`, ...) and
 * shaped; its elements come as JSON numbers (small inputs) or as raw little-endian bytes, base64 in the JSON
 * or as the binary body of the message (large inputs). Raw bytes are viewed in place as a typed array rather
 * than walked element by element, so decoding an image costs a copy at most, never a loop in JavaScript.
 */
import { endianness } from 'os';
import { Tensor } from 'onnxruntime-node';
import { JobRejection } from './errors';

/** Element types the worker accepts, by their Open Inference Protocol names. */
export const DATATYPES = ['BOOL', 'UINT8', 'UINT16', 'UINT32', 'UINT64', 'INT8', 'INT16', 'INT32', 'INT64', 'FP16', 'FP32', 'FP64'] as const;

/** One of {@link DATATYPES}. */
export type Datatype = (typeof DATATYPES)[number];

/** onnxruntime's name for a tensor element type, as in `Tensor.type` and session metadata. */
export type OrtType = Tensor.Type;

type NumericArray =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array;

interface DatatypeInfo {
  readonly ort: OrtType;
  readonly bytes: number;
  readonly array: { new (buffer: ArrayBufferLike, byteOffset: number, length: number): NumericArray; new (length: number): NumericArray };
  /** Inclusive range of integer types; JSON numbers outside it are rejected rather than wrapped. */
  readonly range?: readonly [number, number];
  readonly bigint?: boolean;
}

// FP16 travels as its raw 16-bit patterns (onnxruntime keeps float16 tensors in a Uint16Array).
const INFO: Record<Datatype, DatatypeInfo> = {
  BOOL: { ort: 'bool', bytes: 1, array: Uint8Array, range: [0, 1] },
  UINT8: { ort: 'uint8', bytes: 1, array: Uint8Array, range: [0, 255] },
  UINT16: { ort: 'uint16', bytes: 2, array: Uint16Array, range: [0, 65535] },
  UINT32: { ort: 'uint32', bytes: 4, array: Uint32Array, range: [0, 4294967295] },
  UINT64: { ort: 'uint64', bytes: 8, array: BigUint64Array, range: [0, Number.MAX_SAFE_INTEGER], bigint: true },
  INT8: { ort: 'int8', bytes: 1, array: Int8Array, range: [-128, 127] },
  INT16: { ort: 'int16', bytes: 2, array: Int16Array, range: [-32768, 32767] },
  INT32: { ort: 'int32', bytes: 4, array: Int32Array, range: [-2147483648, 2147483647] },
  INT64: { ort: 'int64', bytes: 8, array: BigInt64Array, range: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER], bigint: true },
  FP16: { ort: 'float16', bytes: 2, array: Uint16Array },
  FP32: { ort: 'float32', bytes: 4, array: Float32Array },
  FP64: { ort: 'float64', bytes: 8, array: Float64Array },
};

const BY_ORT = new Map<string, Datatype>(DATATYPES.map((d) => [INFO[d].ort, d]));

// Raw tensor bytes are little-endian by contract; a big-endian host would silently misread every one.
if (endianness() !== 'LE') {
  throw new Error('the worker reads tensor bytes as little-endian and cannot run on a big-endian host');
}

/** onnxruntime's element type for an Open Inference Protocol datatype. */
export function ortType(datatype: Datatype): OrtType {
  return INFO[datatype].ort;
}

/** The Open Inference Protocol datatype of an onnxruntime element type, or undefined (e.g. `string`). */
export function datatypeOf(type: string): Datatype | undefined {
  return BY_ORT.get(type);
}

/** Bytes per element of a datatype. */
export function bytesPerElement(datatype: Datatype): number {
  return INFO[datatype].bytes;
}

/** Number of elements of a shape. */
export function elementCount(shape: readonly number[]): number {
  let count = 1;
  for (const dim of shape) count *= dim;
  return count;
}

/** Where a tensor came from in the message, for error messages: `inputs[2]` or `inputs[2] (pixels)`. */
export type TensorLocation = string;

/** Builds a tensor from JSON numbers, checking count, integrality and range; `where` names it in errors. */
export function tensorFromNumbers(
  where: TensorLocation,
  datatype: Datatype,
  shape: readonly number[],
  data: ReadonlyArray<number | boolean>,
): Tensor {
  const info = INFO[datatype];
  const expected = elementCount(shape);
  if (data.length !== expected) {
    throw new JobRejection('data', `${where}.data has ${data.length} elements; shape [${shape.join(', ')}] needs ${expected}`);
  }
  if (datatype === 'FP16') {
    throw new JobRejection('data', `${where}: FP16 data cannot be sent as JSON numbers; send its raw bytes as base64 instead`);
  }

  const values = new info.array(expected);
  for (let i = 0; i < expected; i++) {
    const raw = data[i];
    const value = typeof raw === 'boolean' ? (raw ? 1 : 0) : raw;
    if (info.range && !(Number.isInteger(value) && value >= info.range[0] && value <= info.range[1])) {
      throw new JobRejection('data', `${where}.data[${i}] is ${raw}, not a ${datatype} value (an integer in [${info.range[0]}, ${info.range[1]}])`);
    }
    if (typeof raw === 'boolean' && datatype !== 'BOOL') {
      throw new JobRejection('data', `${where}.data[${i}] is a boolean; ${datatype} needs numbers`);
    }
    values[i] = (info.bigint ? BigInt(value) : value) as never;
  }
  return new Tensor(info.ort, values as never, shape);
}

/**
 * Builds a tensor over raw little-endian bytes without copying them when they are aligned for the element
 * type (they are copied once otherwise). The tensor shares memory with `bytes`: do not reuse that buffer.
 */
export function tensorFromBytes(where: TensorLocation, datatype: Datatype, shape: readonly number[], bytes: Uint8Array): Tensor {
  const info = INFO[datatype];
  const expected = elementCount(shape) * info.bytes;
  if (bytes.byteLength !== expected) {
    throw new JobRejection(
      'data',
      `${where} has ${bytes.byteLength} bytes of data; shape [${shape.join(', ')}] of ${datatype} needs ${expected}`,
    );
  }

  let view = bytes;
  if (bytes.byteOffset % info.bytes !== 0) {
    view = new Uint8Array(bytes.byteLength);
    view.set(bytes);
  }
  const values = new info.array(view.buffer, view.byteOffset, elementCount(shape));
  return new Tensor(info.ort, values as never, shape);
}

// Standard or URL-safe alphabet, optional padding. Checked because Buffer.from(…, 'base64') skips bad characters.
const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

/** Decodes base64 tensor bytes, rejecting text that is not base64 rather than silently dropping characters. */
export function bytesFromBase64(where: TensorLocation, text: string): Buffer {
  if (!BASE64.test(text)) {
    throw new JobRejection('data', `${where}.base64 is not valid base64 (characters outside A-Z a-z 0-9 + / - _ =)`);
  }
  return Buffer.from(text, 'base64');
}

/** A tensor as sent back in a result: JSON numbers, or raw little-endian bytes in base64. */
export type EncodedTensor =
  | { name: string; datatype: Datatype; shape: number[]; data: number[] }
  | { name: string; datatype: Datatype; shape: number[]; base64: string };

/** How a result's tensors are written. */
export type TensorEncoding = 'json' | 'base64';

/**
 * Writes a tensor for a result message. 64-bit integers become JSON numbers, which are exact only up to
 * 2^53; FP16 always goes as base64 since JSON has no half-precision numbers.
 */
export function encodeTensor(name: string, tensor: Tensor, encoding: TensorEncoding): EncodedTensor {
  const datatype = datatypeOf(tensor.type);
  if (datatype === undefined) {
    throw new Error(`output ${name} has element type ${tensor.type}, which results cannot carry`);
  }
  const shape = [...tensor.dims];
  const values = tensor.data as NumericArray;

  if (encoding === 'base64' || datatype === 'FP16') {
    const bytes = Buffer.from(values.buffer, values.byteOffset, values.byteLength);
    return { name, datatype, shape, base64: bytes.toString('base64') };
  }
  const data = INFO[datatype].bigint ? Array.from(values as BigInt64Array, Number) : Array.from(values as Float32Array);
  return { name, datatype, shape, data };
}

/** The elements of rows [start, start + rows) of a tensor along axis 0, as a view without copying. */
export function sliceRows(tensor: Tensor, start: number, rows: number): Tensor {
  const rowSize = elementCount(tensor.dims.slice(1));
  const values = tensor.data as NumericArray;
  const view = values.subarray(start * rowSize, (start + rows) * rowSize);
  return new Tensor(tensor.type as OrtType, view as never, [rows, ...tensor.dims.slice(1)]);
}

/** Joins tensors of one element type along axis 0; their other dimensions must already agree. */
export function concatRows(tensors: readonly Tensor[]): Tensor {
  if (tensors.length === 1) return tensors[0];
  const first = tensors[0];
  const datatype = datatypeOf(first.type)!;
  let rows = 0;
  let total = 0;
  for (const t of tensors) {
    rows += t.dims[0];
    total += (t.data as NumericArray).length;
  }

  // Copied as bytes, so that no element is ever converted (float16 data may arrive as a Float16Array).
  const info = INFO[datatype];
  const joined = new Uint8Array(total * info.bytes);
  let offset = 0;
  for (const t of tensors) {
    const values = t.data as NumericArray;
    joined.set(new Uint8Array(values.buffer, values.byteOffset, values.byteLength), offset);
    offset += values.byteLength;
  }
  return new Tensor(first.type as OrtType, new info.array(joined.buffer, 0, total) as never, [rows, ...first.dims.slice(1)]);
}
