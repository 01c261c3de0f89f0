/**
 * A thin layer over onnx-proto's generated messages: named initializers, nodes and graph inputs,
 * serialised with protobufjs. Only what the encoder graph needs.
 */
import onnxProto from 'onnx-proto';

export const { onnx } = onnxProto;

export const DataType = onnx.TensorProto.DataType;
export type DataTypeId = (typeof DataType)[keyof typeof DataType];

/** Dimensions of a graph input or output: a number is fixed, a string is a named dynamic axis. */
export type Dim = number | string;

export type AttributeValue = number | string | number[] | { float: number } | { floats: number[] };

/** Attribute values: integers as numbers, floats wrapped ({ float }), int lists as arrays. */
function attribute(name: string, value: AttributeValue): InstanceType<typeof onnx.AttributeProto> {
  const A = onnx.AttributeProto.AttributeType;
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw new TypeError(`attribute ${name}: pass a non-integer as { float }`);
    return onnx.AttributeProto.create({ name, type: A.INT, i: value });
  }
  if (typeof value === 'string') return onnx.AttributeProto.create({ name, type: A.STRING, s: new TextEncoder().encode(value) });
  if (Array.isArray(value)) return onnx.AttributeProto.create({ name, type: A.INTS, ints: value });
  if ('float' in value) return onnx.AttributeProto.create({ name, type: A.FLOAT, f: value.float });
  return onnx.AttributeProto.create({ name, type: A.FLOATS, floats: value.floats });
}

function bytesOf(data: Float32Array | Int8Array | Uint8Array | Int32Array | BigInt64Array): Uint8Array {
  // ONNX raw_data is little-endian, like every platform onnxruntime-node ships for.
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

function valueInfo(name: string, elemType: DataTypeId, dims: Dim[]): InstanceType<typeof onnx.ValueInfoProto> {
  return onnx.ValueInfoProto.create({
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  });
}

export class GraphBuilder {
  private readonly nodes: InstanceType<typeof onnx.NodeProto>[] = [];
  private readonly initializers: InstanceType<typeof onnx.TensorProto>[] = [];
  private readonly inputs: InstanceType<typeof onnx.ValueInfoProto>[] = [];
  private readonly outputs: InstanceType<typeof onnx.ValueInfoProto>[] = [];
  private readonly names = new Set<string>();
  private counter = 0;
  /** Custom-domain ops used (the domain must be imported by the model). */
  private readonly domains = new Set<string>();

  private fresh(hint: string): string {
    let name = `${hint}_${this.counter++}`;
    while (this.names.has(name)) name = `${hint}_${this.counter++}`;
    return name;
  }

  input(name: string, elemType: DataTypeId, dims: Dim[]): string {
    this.names.add(name);
    this.inputs.push(valueInfo(name, elemType, dims));
    return name;
  }

  output(name: string, elemType: DataTypeId, dims: Dim[]): void {
    this.outputs.push(valueInfo(name, elemType, dims));
  }

  initializer(name: string, dims: number[], data: Float32Array | Int8Array | Uint8Array | Int32Array | BigInt64Array): string {
    const expected = dims.reduce((a, b) => a * b, 1);
    if (data.length !== expected) throw new RangeError(`initializer ${name}: ${data.length} values for shape [${dims}]`);
    const dataType =
      data instanceof Float32Array ? DataType.FLOAT
      : data instanceof Int8Array ? DataType.INT8
      : data instanceof Uint8Array ? DataType.UINT8
      : data instanceof Int32Array ? DataType.INT32
      : DataType.INT64;
    if (this.names.has(name)) throw new Error(`duplicate tensor name ${name}`);
    this.names.add(name);
    this.initializers.push(onnx.TensorProto.create({ name, dims, dataType, rawData: bytesOf(data) }));
    return name;
  }

  /** An int64 constant vector (shapes, axes). */
  ints(hint: string, values: number[]): string {
    return this.initializer(this.fresh(hint), [values.length], BigInt64Array.from(values.map(BigInt)));
  }

  /** Adds a node and returns its output names (one per `outputs`, generated from `hint`). */
  node(
    opType: string,
    inputs: string[],
    options: { outputs?: number | string[]; attrs?: Record<string, AttributeValue>; domain?: string; hint?: string } = {},
  ): string[] {
    const hint = options.hint ?? opType;
    const outputs: string[] = [];
    const wanted = Array.isArray(options.outputs) ? options.outputs : Array.from({ length: options.outputs ?? 1 }, () => '');
    for (const o of wanted) {
      const name = o || this.fresh(hint);
      this.names.add(name);
      outputs.push(name);
    }
    const attribute_ = Object.entries(options.attrs ?? {}).map(([k, v]) => attribute(k, v));
    if (options.domain) this.domains.add(options.domain);
    this.nodes.push(
      onnx.NodeProto.create({
        opType,
        input: inputs,
        output: outputs,
        name: `${hint}_node_${this.nodes.length}`,
        attribute: attribute_,
        domain: options.domain ?? '',
      }),
    );
    return outputs;
  }

  /** Single-output node. */
  op(opType: string, inputs: string[], options: { attrs?: Record<string, AttributeValue>; domain?: string; hint?: string; output?: string } = {}): string {
    return this.node(opType, inputs, { ...options, outputs: options.output ? [options.output] : 1 })[0];
  }

  /** Serialises a ModelProto (IR 8, opset 17 plus com.microsoft v1 when contrib ops are used). */
  encode(graphName: string, producer: { name: string; version: string; docString?: string }): Uint8Array {
    const opsetImport = [{ domain: '', version: 17 }];
    for (const d of this.domains) opsetImport.push({ domain: d, version: 1 });
    const model = onnx.ModelProto.create({
      irVersion: 8,
      producerName: producer.name,
      producerVersion: producer.version,
      docString: producer.docString ?? '',
      opsetImport,
      graph: onnx.GraphProto.create({
        name: graphName,
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      }),
    });
    return onnx.ModelProto.encode(model).finish();
  }

  /** Op types in the graph, for reports. */
  opTypes(): string[] {
    return this.nodes.map((n) => (n.domain ? `${n.domain}.${n.opType}` : String(n.opType)));
  }
}

/** Op types of an encoded model (e.g. the optimised graph ORT writes), counted. */
export function countOpTypes(model: Uint8Array): Record<string, number> {
  const decoded = onnx.ModelProto.decode(model);
  const counts: Record<string, number> = {};
  for (const n of decoded.graph?.node ?? []) {
    const key = n.domain ? `${n.domain}.${n.opType}` : String(n.opType);
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}
