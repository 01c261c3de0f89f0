import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  floatBitsToHalf,
  fromWeightMap,
  halfBitsToFloat,
  readSafetensors,
  readSafetensorsHeader,
  toWeightMap,
  writeSafetensors,
} from '../../../src/model/safetensors.ts';
import { SchemaError } from '../../../src/errors/index.ts';

/** Builds a file by hand: 8-byte LE length, the header text exactly as given, then the data bytes. */
function rawFile(headerJson: string, data: number[]): Uint8Array {
  const header = new TextEncoder().encode(headerJson);
  const out = new Uint8Array(8 + header.length + data.length);
  out[0] = header.length & 0xff;
  out[1] = (header.length >> 8) & 0xff;
  out.set(header, 8);
  out.set(data, 8 + header.length);
  return out;
}

const f32Bits = (x: number): number => new Uint32Array(new Float32Array([x]).buffer)[0];
const toHalf = (x: number): number => floatBitsToHalf(f32Bits(x));

test('fp32 -> fp16 rounds to nearest, ties to even, like IEEE 754', () => {
  const cases: Array<[number, number]> = [
    [0, 0x0000],
    [-0, 0x8000],
    [1, 0x3c00],
    [-2, 0xc000],
    [0.5, 0x3800],
    [65504, 0x7bff], // largest half
    [65519, 0x7bff], // just below the halfway point to 65536
    [65520, 0x7c00], // halfway: ties to even = 65536, which is infinity in half
    [1e6, 0x7c00],
    [-1e6, 0xfc00],
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
    [0.1, 0x2e66],
    [1 / 3, 0x3555],
    [1 + 2 ** -11, 0x3c00], // halfway between 1 and 1+2^-10: even is 1
    [1 + 3 * 2 ** -11, 0x3c02], // halfway between 1+2^-10 and 1+2^-9: even is the latter
    [1 + 2 ** -11 + 2 ** -20, 0x3c01], // just above halfway rounds up
    [2 ** -14, 0x0400], // smallest normal
    [2 ** -24, 0x0001], // smallest subnormal
    [1023 * 2 ** -24, 0x03ff], // largest subnormal
    [1023.5 * 2 ** -24, 0x0400], // rounds up into the smallest normal
    [2 ** -25, 0x0000], // halfway between 0 and 2^-24: even is 0
    [2 ** -25 * (1 + 2 ** -23), 0x0001], // just above halfway
    [3 * 2 ** -25, 0x0002], // 1.5 * 2^-24: ties to even 2
    [-5 * 2 ** -25, 0x8002], // -2.5 * 2^-24: ties to even 2
    [1e-8, 0x0000],
    [-1e-9, 0x8000],
  ];
  for (const [value, bits] of cases) {
    assert.equal(toHalf(value).toString(16), bits.toString(16), `fp16(${value})`);
  }
  const nan = toHalf(NaN);
  assert.equal(nan & 0x7c00, 0x7c00);
  assert.notEqual(nan & 0x3ff, 0);
});

test('fp16 -> fp32 decodes normals, subnormals, infinities and NaN', () => {
  assert.equal(halfBitsToFloat(0x3c00), 1);
  assert.equal(halfBitsToFloat(0xc000), -2);
  assert.equal(halfBitsToFloat(0x7bff), 65504);
  assert.equal(halfBitsToFloat(0x0001), 2 ** -24);
  assert.equal(halfBitsToFloat(0x03ff), 1023 * 2 ** -24);
  assert.equal(halfBitsToFloat(0x0400), 2 ** -14);
  assert.equal(halfBitsToFloat(0x7c00), Infinity);
  assert.equal(halfBitsToFloat(0xfc00), -Infinity);
  assert.ok(Number.isNaN(halfBitsToFloat(0x7e00)));
  assert.ok(Object.is(halfBitsToFloat(0x8000), -0));
  // Every finite half survives half -> float -> half unchanged.
  for (let h = 0; h < 65536; h++) {
    if ((h & 0x7c00) === 0x7c00) continue;
    const back = toHalf(halfBitsToFloat(h));
    if (back !== h) assert.fail(`half 0x${h.toString(16)} round-tripped to 0x${back.toString(16)}`);
  }
});

test('writes the exact bytes of a small F32 file: header padded to 8 with spaces, names sorted', () => {
  const tensors = new Map([
    ['b', { shape: [1], data: new Float32Array([-2]) }],
    ['a', { shape: [2], data: new Float32Array([1, 0.5]) }],
  ]);
  const bytes = writeSafetensors(tensors, { dtype: 'F32' });
  const json = '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}';
  assert.equal(json.length, 108);
  // 108 -> padded to 112.
  assert.deepEqual([...bytes.subarray(0, 8)], [112, 0, 0, 0, 0, 0, 0, 0]);
  assert.equal(new TextDecoder().decode(bytes.subarray(8, 8 + 112)), json + '    ');
  assert.deepEqual([...bytes.subarray(120)], [0, 0, 0x80, 0x3f, 0, 0, 0, 0x3f, 0, 0, 0, 0xc0]);
});

test('writes F16 with metadata and reads it back rounded', () => {
  const tensors = new Map([['w', { shape: [2, 2], data: new Float32Array([1, -2, 0.1, 70000]) }]]);
  const bytes = writeSafetensors(tensors, { dtype: 'F16', metadata: { format: 'pt' } });
  const headerLength = bytes[0] | (bytes[1] << 8);
  assert.equal(headerLength % 8, 0);
  assert.deepEqual([...bytes.subarray(8 + headerLength)], [0x00, 0x3c, 0x00, 0xc0, 0x66, 0x2e, 0x00, 0x7c]);
  const file = readSafetensors(bytes);
  assert.deepEqual(file.metadata, { format: 'pt' });
  const w = file.tensors.get('w')!;
  assert.equal(w.dtype, 'F16');
  assert.deepEqual(w.shape, [2, 2]);
  assert.deepEqual([...w.data], [1, -2, Math.fround(0.0999755859375), Infinity]);
});

test('F32 round trip is exact, including subnormals, -0 and infinities', () => {
  const data = new Float32Array([0, -0, 1e-40, -1e-45, 3.4e38, Infinity, -Infinity, Math.PI]);
  const big = new Float32Array(1000).map((_, i) => Math.sin(i) * 100);
  const bytes = writeSafetensors(
    new Map([
      ['x.weight', { shape: [8], data }],
      ['y', { shape: [10, 100], data: big }],
      ['empty', { shape: [0, 3], data: new Float32Array(0) }],
    ]),
    { dtype: 'F32' },
  );
  const back = readSafetensors(bytes).tensors;
  assert.deepEqual([...back.keys()].sort(), ['empty', 'x.weight', 'y']);
  const x = back.get('x.weight')!.data as Float32Array;
  for (let i = 0; i < data.length; i++) assert.ok(Object.is(x[i], data[i]), `element ${i}`);
  assert.deepEqual(back.get('y')!.data, big);
  assert.deepEqual(back.get('empty')!.shape, [0, 3]);
});

test('reads hand-made BF16, F64, I32 and I64 tensors, at an unaligned data offset', () => {
  // Header of odd length so the data starts at an unaligned byte.
  const header = JSON.stringify({
    __metadata__: { k: 'v' },
    bf: { dtype: 'BF16', shape: [2], data_offsets: [0, 4] },
    d: { dtype: 'F64', shape: [1], data_offsets: [4, 12] },
    i: { dtype: 'I32', shape: [2], data_offsets: [12, 20] },
    l: { dtype: 'I64', shape: [1], data_offsets: [20, 28] },
  });
  const data = [
    0x80, 0x3f, 0x00, 0xc0, // bf16 1.0, -2.0
    0, 0, 0, 0, 0, 0, 0xf8, 0x3f, // f64 1.5
    0xff, 0xff, 0xff, 0xff, 7, 0, 0, 0, // i32 -1, 7
    0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // i64 -2
  ];
  const file = readSafetensors(rawFile(header + (header.length % 2 === 0 ? ' ' : ''), data));
  assert.deepEqual(file.metadata, { k: 'v' });
  assert.deepEqual([...file.tensors.get('bf')!.data], [1, -2]);
  assert.ok(file.tensors.get('d')!.data instanceof Float32Array);
  assert.deepEqual([...file.tensors.get('d')!.data], [1.5]);
  assert.ok(file.tensors.get('i')!.data instanceof Int32Array);
  assert.deepEqual([...file.tensors.get('i')!.data], [-1, 7]);
  assert.ok(file.tensors.get('l')!.data instanceof BigInt64Array);
  assert.deepEqual([...file.tensors.get('l')!.data], [-2n]);
  // toWeightMap refuses integers unless they are skipped.
  assert.throws(() => toWeightMap(file), /integer dtype I32/);
  const weights = toWeightMap(file, (n) => n === 'i' || n === 'l');
  assert.deepEqual([...weights.keys()].sort(), ['bf', 'd']);
});

test('refuses corrupt files with a SchemaError that says what is wrong', () => {
  const good = writeSafetensors(new Map([['a', { shape: [2], data: new Float32Array([1, 2]) }]]), { dtype: 'F32' });
  assert.equal(readSafetensors(good).tensors.size, 1);
  const cases: Array<[Uint8Array, RegExp]> = [
    [new Uint8Array(4), /shorter than the 8-byte/],
    [good.subarray(0, good.length - 1), /data_offsets end 8 is past the 7-byte data buffer/],
    [good.subarray(0, 20), /runs past the end/],
    [Uint8Array.from([...good, 0]), /trailing bytes/],
    [rawFile('{"a":', []), /not valid UTF-8 JSON/],
    [rawFile('[1,2]', []), /not a JSON object/],
    [rawFile('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', new Array(8).fill(0)), /do not hold shape \[3\]/],
    [rawFile('{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}', new Array(8).fill(0)), /end before begin/],
    [rawFile('{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}', new Array(4).fill(0)), /shape/],
    [rawFile('{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', new Array(8).fill(0)), /hole in the data buffer/],
    [
      rawFile('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', new Array(8).fill(0)),
      /overlaps/,
    ],
    [rawFile('{"__metadata__":{"k":1}}', []), /__metadata__.k is not a string/],
    [rawFile('{"a":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}}', [0]), /not supported/],
  ];
  const huge = new Uint8Array(16);
  huge[7] = 1;
  cases.push([huge, /over the .* limit/]);
  for (const [bytes, message] of cases) {
    assert.throws(() => readSafetensors(bytes), (e: unknown) => e instanceof SchemaError && message.test(e.message), String(message));
  }
  assert.throws(() => writeSafetensors(new Map([['a', { shape: [3], data: new Float32Array(2) }]]), { dtype: 'F32' }), SchemaError);
});

test('the header can be read without decoding tensors', () => {
  const bytes = writeSafetensors(new Map([['a', { shape: [3], data: new Float32Array(3) }]]), { dtype: 'F16' });
  const header = readSafetensorsHeader(bytes);
  assert.deepEqual(header.entries.get('a'), { dtype: 'F16', shape: [3], begin: 0, end: 6 });
  assert.equal(header.dataStart % 8, 0);
});

test('WeightMap bridges keep names, shapes and values', () => {
  const weights = new Map([['x', { shape: [2, 1], data: new Float32Array([0.25, -4]) }]]);
  const back = toWeightMap(readSafetensors(writeSafetensors(fromWeightMap(weights), { dtype: 'F32' })));
  assert.deepEqual(back, weights);
  assert.throws(() => fromWeightMap(new Map([['x', { shape: [3], data: new Float32Array(2) }]])), /do not fill shape/);
});
