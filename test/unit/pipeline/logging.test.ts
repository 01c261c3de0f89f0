import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createJsonLogger, safeErrorMessage } from '../../../src/pipeline/logging.ts';

test('one JSON line per event with time, level, msg and fields; below-threshold levels dropped', () => {
  const lines: string[] = [];
  const log = createJsonLogger({ level: 'info', sink: (l) => lines.push(l), fields: { service: 'x' }, now: () => new Date(0) });
  log.debug('hidden');
  log.child({ partition: 3 }).warn('hello', { count: 2, error: new TypeError('boom') });
  assert.equal(lines.length, 1);
  assert.deepEqual(JSON.parse(lines[0]), {
    time: '1970-01-01T00:00:00.000Z',
    level: 'warn',
    msg: 'hello',
    service: 'x',
    partition: 3,
    count: 2,
    error: { errorClass: 'TypeError', message: 'boom' },
  });
});

test('fields that could carry clinical content are redacted, at any depth', () => {
  const lines: string[] = [];
  const log = createJsonLogger({ sink: (l) => lines.push(l) });
  log.info('doc', { text: '患者咳嗽', patientRef: 'P-123', nested: { patientRef: 'P-9', sentence: '头痛' }, original: Buffer.from('x') });
  assert.ok(!lines[0].includes('患者咳嗽') && !lines[0].includes('P-123') && !lines[0].includes('P-9') && !lines[0].includes('头痛'));
});

test('safeErrorMessage removes known secrets and cuts long messages', () => {
  assert.equal(safeErrorMessage(new Error('bad token in 患者咳嗽三天 for P-77'), ['患者咳嗽三天', 'P-77']), 'bad token in [redacted] for [redacted]');
  assert.ok(safeErrorMessage(new Error('x'.repeat(1000))).length < 320);
});
