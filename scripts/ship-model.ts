/**
 * Copies a fine-tuned model artifact to the directory the stage serves by default, under a product
 * name (the artifact's version is that name + the hash of its content), keeping its training record
 * and extra files. The source is verified on load (sha256 of every file).
 *
 *   node --import tsx scripts/ship-model.ts SRC_DIR [--to models/medical] [--name rmbert-medical-kg-recadam] [--note TEXT] [--dtype F32|F16]
 *
 * F32 by default, so the shipped weights are exactly the ones that were evaluated.
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadArtifact, writeArtifact } from '../src/model/artifact.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { to: { type: 'string', default: 'models/medical' }, name: { type: 'string' }, note: { type: 'string' }, dtype: { type: 'string', default: 'F32' }, help: { type: 'boolean', short: 'h' } },
});
if (values.help || positionals.length !== 1 || (values.dtype !== 'F32' && values.dtype !== 'F16')) {
  console.error('usage: node --import tsx scripts/ship-model.ts SRC_DIR [--to models/medical] [--name NAME] [--note TEXT] [--dtype F32|F16]');
  process.exit(values.help ? 0 : 2);
}
const src = path.resolve(positionals[0]);
const art = await loadArtifact(src);
const name = values.name ?? art.config.name;
const training = { ...art.config.training, shippedFrom: `${art.version.name}+${art.version.hash}`, ...(values.note ? { shippingNote: values.note } : {}) };
const keep = new Set(['config.json', 'manifest.json', 'weights.safetensors']);
const extraFiles: Record<string, Buffer> = {};
for (const file of await readdir(src)) if (!keep.has(file)) extraFiles[file] = await readFile(path.join(src, file));
const dtype = values.dtype === 'F16' ? 'F16' : 'F32';
const out = await writeArtifact(path.resolve(values.to), { ...art.config, name, training }, art.weights, { dtype, overwrite: true, extraFiles });
console.log(`shipped ${art.version.name}+${art.version.hash} to ${values.to} as ${out.version.name}+${out.version.hash} (${dtype})`);
