/**
 * Reader and writer for the safetensors format (https://github.com/huggingface/safetensors):
 *   8 bytes little-endian u64 N | N bytes UTF-8 JSON header | tensor bytes.
 * The header maps each tensor name to { dtype, shape, data_offsets: [begin, end] } (offsets into the
 * byte buffer after the header) plus an optional "__metadata__" string map. Tensors are little-endian,
 * row-major, and cover the byte buffer exactly (no holes, no overlaps).
 *
 * Floating-point tensors (F16, BF16, F32, F64) are decoded to Float32Array because that is what the
 * encoders compute in; integer tensors keep their integer type.
 */
import { SchemaError } from '../errors/index.ts';
import type { WeightMap } from './types.ts';

export type SafetensorsData = Float32Array | Int32Array | BigInt64Array;

export interface SafetensorsTensor {
  /** dtype as stored in the file (e.g. "F16"), even though floats come back as Float32Array. */
  dtype: string;
  shape: number[];
  data: SafetensorsData;
}

export interface SafetensorsFile {
  tensors: Map<string, SafetensorsTensor>;
  metadata: Record<string, string>;
}

export interface SafetensorsHeaderEntry {
  dtype: string;
  shape: number[];
  /** Offsets into the byte buffer that follows the header. */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  entries: Map<string, SafetensorsHeaderEntry>;
  metadata: Record<string, string>;
  /** Offset of the tensor byte buffer in the file (8 + header length). */
  dataStart: number;
}

export interface WriteSafetensorsOptions {
  dtype: 'F32' | 'F16';
  metadata?: Record<string, string>;
}

/** Bytes per element of each dtype the reader understands. */
const DTYPE_BYTES: Record<string, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  U16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

/** The Rust reference implementation refuses headers over 100 MB; so do we (a corrupt length field otherwise allocates gigabytes). */
const MAX_HEADER_BYTES = 100_000_000;

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// ---------------------------------------------------------------------------------------------
// fp16 <-> fp32

let halfToFloatTable: Float32Array | undefined;

/** All 65,536 half-precision values as float32: decoding is then one table lookup per element. */
function halfTable(): Float32Array {
  if (halfToFloatTable) return halfToFloatTable;
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const negative = (h & 0x8000) !== 0;
    const exponent = (h >>> 10) & 0x1f;
    const mantissa = h & 0x3ff;
    let value: number;
    if (exponent === 0) value = mantissa * 2 ** -24;
    else if (exponent === 31) value = mantissa === 0 ? Infinity : NaN;
    else value = (1 + mantissa / 1024) * 2 ** (exponent - 15);
    table[h] = negative ? -value : value;
  }
  halfToFloatTable = table;
  return table;
}

/** Decodes one IEEE 754 half (as its 16 bits) to a number. */
export function halfBitsToFloat(bits: number): number {
  return halfTable()[bits & 0xffff];
}

/**
 * Rounds a float32 (given as its 32 bits) to the nearest half, ties to even, as IEEE 754 and numpy do:
 * overflow goes to infinity, tiny values to (signed) zero or a subnormal, NaN stays NaN.
 */
export function floatBitsToHalf(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  const mantissa = bits & 0x7fffff;
  if (exponent === 0xff) {
    if (mantissa === 0) return sign | 0x7c00;
    // Keep the top payload bits and force a quiet NaN so the payload can never round to infinity.
    return sign | 0x7e00 | (mantissa >>> 13);
  }
  // Half exponents are float exponents - 112; >= 31 overflows.
  if (exponent >= 143) return sign | 0x7c00;
  if (exponent <= 112) {
    // Half subnormal (or zero): value = m * 2^-24 with m in [0, 1023]. Below 2^-25 everything rounds to 0.
    if (exponent < 102) return sign;
    const full = mantissa | 0x800000;
    const shift = 126 - exponent; // 14..24
    let m = full >>> shift;
    const rest = full & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rest > halfway || (rest === halfway && (m & 1) === 1)) m++;
    // m may reach 0x400, which is exactly the encoding of the smallest normal.
    return sign | m;
  }
  let h = ((exponent - 112) << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (and reaches infinity at the top).
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h++;
  return sign | h;
}

/** Rounds every element of `src` to half precision (bits). */
export function float32ToHalfBits(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = floatBitsToHalf(bits[i]);
  return out;
}

/** Decodes half-precision bits to float32. */
export function halfBitsToFloat32(src: Uint16Array): Float32Array {
  const table = halfTable();
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = table[src[i]];
  return out;
}

// ---------------------------------------------------------------------------------------------
// Reading

function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Parses and validates the header; does not decode any tensor. */
export function readSafetensorsHeader(buf: Uint8Array): SafetensorsHeader {
  if (buf.length < 8) throw new SchemaError(`safetensors: file is ${buf.length} bytes, shorter than the 8-byte header length`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const low = view.getUint32(0, true);
  const high = view.getUint32(4, true);
  const headerLength = high * 2 ** 32 + low;
  if (headerLength > MAX_HEADER_BYTES) {
    throw new SchemaError(`safetensors: header length ${headerLength} is over the ${MAX_HEADER_BYTES}-byte limit (not a safetensors file?)`);
  }
  if (8 + headerLength > buf.length) {
    throw new SchemaError(`safetensors: header length ${headerLength} runs past the end of the ${buf.length}-byte file (truncated?)`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(8, 8 + headerLength)));
  } catch (error) {
    throw new SchemaError(`safetensors: header is not valid UTF-8 JSON: ${(error as Error).message}`, { cause: error });
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new SchemaError('safetensors: header is not a JSON object');
  }
  const dataStart = 8 + headerLength;
  const dataLength = buf.length - dataStart;
  const metadata: Record<string, string> = {};
  const entries = new Map<string, SafetensorsHeaderEntry>();
  for (const [name, raw] of Object.entries(parsed as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new SchemaError('safetensors: __metadata__ is not an object');
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== 'string') throw new SchemaError(`safetensors: __metadata__.${k} is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    if (raw === null || typeof raw !== 'object') throw new SchemaError(`safetensors: tensor "${name}": entry is not an object`);
    const { dtype, shape, data_offsets: offsets } = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof dtype !== 'string') throw new SchemaError(`safetensors: tensor "${name}": dtype missing`);
    if (!Array.isArray(shape) || !shape.every(isCount)) throw new SchemaError(`safetensors: tensor "${name}": shape is not a list of non-negative integers`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount)) {
      throw new SchemaError(`safetensors: tensor "${name}": data_offsets is not [begin, end]`);
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end) throw new SchemaError(`safetensors: tensor "${name}": data_offsets [${begin}, ${end}] end before begin`);
    if (end > dataLength) {
      throw new SchemaError(`safetensors: tensor "${name}": data_offsets end ${end} is past the ${dataLength}-byte data buffer (truncated file?)`);
    }
    const width = DTYPE_BYTES[dtype];
    if (width !== undefined && (end - begin) !== elementCount(shape as number[]) * width) {
      throw new SchemaError(
        `safetensors: tensor "${name}": ${end - begin} bytes do not hold shape [${(shape as number[]).join(', ')}] of ${dtype}`,
      );
    }
    entries.set(name, { dtype, shape: [...(shape as number[])], begin, end });
  }
  // The format requires the tensors to tile the data buffer exactly; anything else is a corrupt file.
  const spans = [...entries.entries()].sort((a, b) => a[1].begin - b[1].begin || a[1].end - b[1].end);
  let cursor = 0;
  for (const [name, e] of spans) {
    if (e.begin !== cursor) {
      throw new SchemaError(
        e.begin < cursor
          ? `safetensors: tensor "${name}" overlaps the tensor before it (begins at ${e.begin}, previous ends at ${cursor})`
          : `safetensors: hole in the data buffer before tensor "${name}" (bytes ${cursor}..${e.begin})`,
      );
    }
    cursor = e.end;
  }
  if (cursor !== dataLength) {
    throw new SchemaError(`safetensors: data buffer is ${dataLength} bytes but the tensors cover ${cursor} (truncated or trailing bytes)`);
  }
  return { entries, metadata, dataStart };
}

/** A copy of `bytes` in a fresh, aligned ArrayBuffer. */
function alignedCopy(bytes: Uint8Array): ArrayBuffer {
  const copy = new Uint8Array(bytes.length);
  copy.set(bytes);
  return copy.buffer;
}

/** Decodes one tensor described by `entry` (from readSafetensorsHeader) out of `buf`. */
export function decodeSafetensorsTensor(buf: Uint8Array, header: SafetensorsHeader, name: string): SafetensorsTensor {
  const entry = header.entries.get(name);
  if (!entry) throw new SchemaError(`safetensors: no tensor "${name}"`);
  const bytes = buf.subarray(header.dataStart + entry.begin, header.dataStart + entry.end);
  const n = elementCount(entry.shape);
  const shape = [...entry.shape];
  const dtype = entry.dtype;
  if (LITTLE_ENDIAN_HOST) {
    switch (dtype) {
      case 'F32':
        return { dtype, shape, data: new Float32Array(alignedCopy(bytes)) };
      case 'F16':
        return { dtype, shape, data: halfBitsToFloat32(new Uint16Array(alignedCopy(bytes))) };
      case 'BF16': {
        const src = new Uint16Array(alignedCopy(bytes));
        const out = new Float32Array(n);
        const outBits = new Uint32Array(out.buffer);
        for (let i = 0; i < n; i++) outBits[i] = src[i] << 16;
        return { dtype, shape, data: out };
      }
      case 'F64':
        return { dtype, shape, data: Float32Array.from(new Float64Array(alignedCopy(bytes))) };
      case 'I32':
        return { dtype, shape, data: new Int32Array(alignedCopy(bytes)) };
      case 'I64':
        return { dtype, shape, data: new BigInt64Array(alignedCopy(bytes)) };
      default:
        break;
    }
  }
  // Narrow integer types (and any dtype on a big-endian host) go through a DataView.
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const table = dtype === 'F16' ? halfTable() : undefined;
  switch (dtype) {
    case 'F32':
    case 'F16':
    case 'BF16':
    case 'F64': {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        if (dtype === 'F32') out[i] = view.getFloat32(i * 4, true);
        else if (dtype === 'F64') out[i] = view.getFloat64(i * 8, true);
        else if (table) out[i] = table[view.getUint16(i * 2, true)];
        else {
          const tmp = new DataView(new ArrayBuffer(4));
          tmp.setUint32(0, view.getUint16(i * 2, true) << 16);
          out[i] = tmp.getFloat32(0);
        }
      }
      return { dtype, shape, data: out };
    }
    case 'I64': {
      const out = new BigInt64Array(n);
      for (let i = 0; i < n; i++) out[i] = view.getBigInt64(i * 8, true);
      return { dtype, shape, data: out };
    }
    case 'I32':
    case 'I16':
    case 'U16':
    case 'I8':
    case 'U8':
    case 'BOOL': {
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        if (dtype === 'I32') out[i] = view.getInt32(i * 4, true);
        else if (dtype === 'I16') out[i] = view.getInt16(i * 2, true);
        else if (dtype === 'U16') out[i] = view.getUint16(i * 2, true);
        else if (dtype === 'I8') out[i] = view.getInt8(i);
        else out[i] = view.getUint8(i);
      }
      return { dtype, shape, data: out };
    }
    default:
      throw new SchemaError(`safetensors: tensor "${name}" has dtype ${dtype}, which is not supported (F16, BF16, F32, F64, I8..I64, U8, U16, BOOL)`);
  }
}

/**
 * Reads a whole safetensors file. Floats (F16/BF16/F32/F64) come back as Float32Array, I64 as
 * BigInt64Array, narrower integers and BOOL as Int32Array. `only` limits decoding to some names.
 */
export function readSafetensors(buf: Uint8Array, options: { only?: (name: string) => boolean } = {}): SafetensorsFile {
  const header = readSafetensorsHeader(buf);
  const tensors = new Map<string, SafetensorsTensor>();
  for (const name of header.entries.keys()) {
    if (options.only && !options.only(name)) continue;
    tensors.set(name, decodeSafetensorsTensor(buf, header, name));
  }
  return { tensors, metadata: header.metadata };
}

// ---------------------------------------------------------------------------------------------
// Writing

/**
 * Serialises float32 tensors as F32 or F16 (round to nearest, ties to even). Names are written in
 * sorted order (the reference implementation orders by dtype alignment, then name; all tensors here
 * share one dtype), the header is padded with spaces to a multiple of 8 bytes so that tensor data
 * stays aligned.
 */
export function writeSafetensors(
  tensors: ReadonlyMap<string, { shape: readonly number[]; data: Float32Array }>,
  options: WriteSafetensorsOptions,
): Uint8Array {
  const { dtype } = options;
  if (dtype !== 'F32' && dtype !== 'F16') throw new SchemaError(`safetensors: cannot write dtype ${String(dtype)} (F32 or F16)`);
  const width = dtype === 'F32' ? 4 : 2;
  const names = [...tensors.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const header: Record<string, unknown> = {};
  if (options.metadata && Object.keys(options.metadata).length > 0) {
    for (const [k, v] of Object.entries(options.metadata)) {
      if (typeof v !== 'string') throw new SchemaError(`safetensors: metadata "${k}" is not a string`);
    }
    header.__metadata__ = options.metadata;
  }
  let offset = 0;
  for (const name of names) {
    if (name === '' || name === '__metadata__') throw new SchemaError(`safetensors: invalid tensor name "${name}"`);
    const t = tensors.get(name)!;
    if (!t.shape.every((d) => isCount(d))) throw new SchemaError(`safetensors: tensor "${name}": shape [${t.shape.join(', ')}] is not a list of non-negative integers`);
    const n = elementCount(t.shape);
    if (t.data.length !== n) {
      throw new SchemaError(`safetensors: tensor "${name}": ${t.data.length} values do not fill shape [${t.shape.join(', ')}]`);
    }
    header[name] = { dtype, shape: [...t.shape], data_offsets: [offset, offset + n * width] };
    offset += n * width;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const headerLength = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + headerLength + offset);
  const view = new DataView(out.buffer);
  view.setUint32(0, headerLength % 2 ** 32, true);
  view.setUint32(4, Math.floor(headerLength / 2 ** 32), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + headerLength);
  let pos = 8 + headerLength;
  for (const name of names) {
    const data = tensors.get(name)!.data;
    if (dtype === 'F32') {
      if (LITTLE_ENDIAN_HOST) out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), pos);
      else for (let i = 0; i < data.length; i++) view.setFloat32(pos + i * 4, data[i], true);
    } else {
      const half = float32ToHalfBits(data);
      if (LITTLE_ENDIAN_HOST) out.set(new Uint8Array(half.buffer, half.byteOffset, half.byteLength), pos);
      else for (let i = 0; i < half.length; i++) view.setUint16(pos + i * 2, half[i], true);
    }
    pos += data.length * width;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// WeightMap bridges

/** The float tensors of a read file as a WeightMap; refuses integer tensors (name them in `skip` to leave them out). */
export function toWeightMap(file: SafetensorsFile | Map<string, SafetensorsTensor>, skip: (name: string) => boolean = () => false): WeightMap {
  const tensors = file instanceof Map ? file : file.tensors;
  const weights: WeightMap = new Map();
  for (const [name, t] of tensors) {
    if (skip(name)) continue;
    if (!(t.data instanceof Float32Array)) {
      throw new SchemaError(`safetensors: tensor "${name}" has integer dtype ${t.dtype}; a weight must be floating point`);
    }
    weights.set(name, { shape: [...t.shape], data: t.data });
  }
  return weights;
}

/** A WeightMap in the form writeSafetensors takes, checking that every tensor's data fills its shape. */
export function fromWeightMap(weights: WeightMap): Map<string, { shape: number[]; data: Float32Array }> {
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, t] of weights) {
    if (t.data.length !== elementCount(t.shape)) {
      throw new SchemaError(`weight "${name}": ${t.data.length} values do not fill shape [${t.shape.join(', ')}]`);
    }
    out.set(name, { shape: [...t.shape], data: t.data });
  }
  return out;
}
