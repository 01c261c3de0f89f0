/**
 * Picks the TensorFlow.js backend once at start: tfjs-node-gpu (CUDA), tfjs-node, wasm, then the pure-JS cpu
 * backend. Each candidate is a guarded dynamic import, because the native packages are optional and their
 * install fails offline. The reason every skipped candidate was skipped is logged, so an operator can see why
 * a host did not get the backend it was expected to get.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { ModelError } from '../errors/index.ts';

export type BackendName = 'tensorflow-gpu' | 'tensorflow' | 'wasm' | 'cpu';
/** What a caller may ask for: one backend, or automatic choice. 'node-gpu' and 'node' are accepted aliases. */
export type BackendChoice = 'auto' | 'node-gpu' | 'node' | 'tensorflow' | 'wasm' | 'cpu';

export interface BackendSelection {
  /** tf.getBackend() after selection: 'tensorflow' for tfjs-node(-gpu), 'wasm' or 'cpu'. */
  backend: string;
  /** Engine label for logs and records, e.g. "tfjs-wasm", "tfjs-node-gpu". */
  engineName: string;
  skipped: { candidate: string; reason: string }[];
}

const require = createRequire(import.meta.url);
let selected: BackendSelection | null = null;
let selecting: Promise<BackendSelection> | null = null;

function errorText(error: unknown): string {
  const msg = error instanceof Error ? error.message : String(error);
  return msg.split('\n')[0].slice(0, 200);
}

async function tryNative(pkg: '@tensorflow/tfjs-node-gpu' | '@tensorflow/tfjs-node'): Promise<void> {
  // The native packages register the 'tensorflow' backend as a side effect of being loaded. A string
  // variable keeps bundlers and the type checker from resolving the optional package.
  const name: string = pkg;
  await import(name);
  if (!(await tf.setBackend('tensorflow'))) throw new Error('the tensorflow backend did not initialise');
}

async function tryWasm(): Promise<void> {
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  // Under Node the .wasm binaries are read from the package's dist folder; threads stay off (Node has no
  // cross-origin-isolated SharedArrayBuffer workers for the emscripten pthread build).
  const dist = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm'));
  wasm.setWasmPaths(dist + path.sep);
  wasm.setThreadsCount(1);
  if (!(await tf.setBackend('wasm'))) throw new Error('the wasm backend did not initialise');
}

async function tryCpu(): Promise<void> {
  await import('@tensorflow/tfjs-backend-cpu');
  if (!(await tf.setBackend('cpu'))) throw new Error('the cpu backend did not initialise');
}

const CANDIDATES: { name: string; engineName: string; aliases: BackendChoice[]; load: () => Promise<void> }[] = [
  { name: 'tfjs-node-gpu', engineName: 'tfjs-node-gpu', aliases: ['node-gpu'], load: () => tryNative('@tensorflow/tfjs-node-gpu') },
  { name: 'tfjs-node', engineName: 'tfjs-node', aliases: ['node', 'tensorflow'], load: () => tryNative('@tensorflow/tfjs-node') },
  { name: 'wasm', engineName: 'tfjs-wasm', aliases: ['wasm'], load: tryWasm },
  { name: 'cpu', engineName: 'tfjs-cpu', aliases: ['cpu'], load: tryCpu },
];

/**
 * Selects and initialises the backend. With `choice` other than 'auto' only that backend is tried and a
 * failure is a ModelError. Selection happens once per process; later calls return the first result
 * (asking for a different backend later is an error, since tensors cannot move between backends).
 */
export async function selectBackend(
  choice: BackendChoice = 'auto',
  log: (line: string) => void = (line) => console.error(line),
): Promise<BackendSelection> {
  if (selected) {
    if (choice !== 'auto' && !CANDIDATES.find((c) => c.aliases.includes(choice) && c.engineName === selected!.engineName)) {
      throw new ModelError(`tfjs backend already selected as ${selected.engineName}; cannot switch to ${choice}`);
    }
    return selected;
  }
  if (selecting) return selecting;
  selecting = (async () => {
    const skipped: BackendSelection['skipped'] = [];
    const candidates = choice === 'auto' ? CANDIDATES : CANDIDATES.filter((c) => c.aliases.includes(choice));
    if (candidates.length === 0) throw new ModelError(`unknown tfjs backend "${choice}" (use auto, node-gpu, node, wasm or cpu)`);
    for (const c of candidates) {
      try {
        await c.load();
        await tf.ready();
        selected = { backend: tf.getBackend(), engineName: c.engineName, skipped };
        return selected;
      } catch (error) {
        const reason = errorText(error);
        skipped.push({ candidate: c.name, reason });
        log(`tfjs backend ${c.name} skipped: ${reason}`);
      }
    }
    throw new ModelError(
      `no tfjs backend could be initialised (${skipped.map((s) => `${s.candidate}: ${s.reason}`).join('; ')})`,
    );
  })();
  try {
    return await selecting;
  } finally {
    selecting = null;
  }
}

/** The selection made so far, or null before selectBackend() ran. */
export function currentBackend(): BackendSelection | null {
  return selected;
}
