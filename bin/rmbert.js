#!/usr/bin/env node
// Runs the TypeScript entry point through tsx so that the CLI works without a build step. Both hooks
// are needed: some dependencies (TensorFlow.js) mix CommonJS and ES modules.
import { register as registerEsm } from 'tsx/esm/api';
import { register as registerCjs } from 'tsx/cjs/api';

registerCjs();
registerEsm();
await import('../src/cli/main.ts');
