import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assertionMarker } from '../../../src/cli/commands/demo.ts';

test('the demo marks what the text asserts about an entity, and nothing for a plain or unassessed one', () => {
  const base = { polarity: 'present', certainty: 'certain', temporality: 'current', experiencer: 'patient', triggers: [] } as const;
  assert.equal(assertionMarker({ ...base, polarity: 'absent', triggers: [{ start: 0, end: 2, text: '否认', property: 'negation' }] }), ' [absent: 否认]');
  assert.equal(
    assertionMarker({
      ...base,
      polarity: 'absent',
      temporality: 'historical',
      triggers: [
        { start: 0, end: 2, text: '否认', property: 'negation' },
        { start: 9, end: 11, text: '病史', property: 'history' },
      ],
    }),
    ' [absent, historical: 否认 病史]',
  );
  assert.equal(assertionMarker({ ...base, certainty: 'possible', experiencer: 'other', triggers: [] }), ' [possible, other experiencer]');
  assert.equal(assertionMarker({ ...base, triggers: [] }), '');
  assert.equal(assertionMarker(null), '');
});
