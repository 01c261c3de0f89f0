export { OnnxEngine, type OnnxEngineInfo, type OnnxEngineOptions } from './engine.ts';
export {
  buildOnnxModel,
  classifierLabels,
  forwardFlops,
  quantizeColumns,
  ONNX_INPUT_NAMES,
  ONNX_OUTPUT_NAME,
  type BuiltOnnxModel,
  type Int8WeightFormat,
  type OnnxGraphForm,
  type OnnxGraphOptions,
  type OnnxQuantization,
} from './graph.ts';
export { planBatches, type BatchLimits, type PlannedBatch } from './batching.ts';
export { onnxMatMulPeakGflops } from './peak.ts';
export { countOpTypes } from './proto.ts';
