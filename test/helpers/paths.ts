import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root. */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** The shared datasets (read-only); CI has them at the same place, beside the clone. */
export const SHARED_DATA = path.resolve(REPO_ROOT, '../shared/data');
export const sharedData = (...parts: string[]): string => path.join(SHARED_DATA, ...parts);
