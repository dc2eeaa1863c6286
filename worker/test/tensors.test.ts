import { Tensor } from 'onnxruntime-node';
import { JobRejection } from '../src/errors';
import { concatRows, encodeTensor, sliceRows, tensorFromBytes, tensorFromNumbers } from '../src/tensors';

describe('tensors', () => {
  test('raw bytes are viewed, not copied, when aligned', () => {
    const bytes = Buffer.from(new Float32Array([1, 2, 3, 4]).buffer);
    const tensor = tensorFromBytes('inputs[0]', 'FP32', [2, 2], bytes);
    expect((tensor.data as Float32Array).buffer).toBe(bytes.buffer);
    expect(Array.from(tensor.data as Float32Array)).toEqual([1, 2, 3, 4]);
  });

  test('BOOL takes booleans or 0/1, and nothing else', () => {
    const tensor = tensorFromNumbers('inputs[0]', 'BOOL', [3], [true, false, 1]);
    expect(tensor.type).toBe('bool');
    expect(Array.from(tensor.data as Uint8Array)).toEqual([1, 0, 1]);
    expect(() => tensorFromNumbers('inputs[0]', 'BOOL', [1], [2])).toThrow(JobRejection);
    expect(() => tensorFromNumbers('inputs[0]', 'FP32', [1], [true])).toThrow('inputs[0].data[0] is a boolean; FP32 needs numbers');
  });

  test('FP16 only as bytes in, always base64 out', () => {
    expect(() => tensorFromNumbers('inputs[0]', 'FP16', [1], [1])).toThrow('send its raw bytes as base64 instead');
    const half = new Tensor('float16', new Uint16Array([0x3c00, 0x4000]), [2]); // 1.0, 2.0
    expect(encodeTensor('h', half, 'json')).toEqual({ name: 'h', datatype: 'FP16', shape: [2], base64: Buffer.from([0x00, 0x3c, 0x00, 0x40]).toString('base64') });
  });

  test('concatRows then sliceRows gives every part back, for any element type', () => {
    const a = new Tensor('int64', new BigInt64Array([1n, 2n, 3n]), [1, 3]);
    const b = new Tensor('int64', new BigInt64Array([4n, 5n, 6n, 7n, 8n, 9n]), [2, 3]);
    const joined = concatRows([a, b]);
    expect(joined.dims).toEqual([3, 3]);
    expect(Array.from(joined.data as BigInt64Array)).toEqual([1n, 2n, 3n, 4n, 5n, 6n, 7n, 8n, 9n]);
    expect(Array.from(sliceRows(joined, 1, 2).data as BigInt64Array)).toEqual([4n, 5n, 6n, 7n, 8n, 9n]);
    expect(sliceRows(joined, 1, 2).dims).toEqual([2, 3]);

    const h1 = new Tensor('float16', new Uint16Array([0x3c00]), [1, 1]);
    const h2 = new Tensor('float16', new Uint16Array([0x4000]), [1, 1]);
    expect(Array.from(new Uint16Array((concatRows([h1, h2]).data as Uint16Array).buffer))).toEqual([0x3c00, 0x4000]);
  });

  test('JSON encoding of int64 outputs gives plain numbers', () => {
    const ids = new Tensor('int64', new BigInt64Array([5n, 9007199254740991n]), [1, 2]);
    expect(encodeTensor('ids', ids, 'json')).toEqual({ name: 'ids', datatype: 'INT64', shape: [1, 2], data: [5, 9007199254740991] });
  });
});
