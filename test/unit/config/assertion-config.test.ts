import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { createAssertionAssessor } from '../../../src/cli/stage-wiring.ts';
import { buildConfig, configFlagOptions, flagValues } from '../../../src/config/index.ts';
import { ConfigError } from '../../../src/errors/index.ts';

const base = { RMBERT_NEO4J_PASSWORD: 'secret' };

function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  assert.fail('expected a ConfigError');
}

test('assertions are on by default with no extra lexicon; --no-assertion and RMBERT_ASSERTION_ENABLED turn them off', () => {
  const c = buildConfig({ env: base });
  assert.deepEqual(c.assertion, { enabled: true, lexiconFile: null });
  assert.ok(Object.isFrozen(c.assertion));
  assert.ok('no-assertion' in configFlagOptions());
  assert.equal(buildConfig({ env: base, flags: flagValues({ 'no-assertion': true }) }).assertion.enabled, false);
  assert.equal(buildConfig({ env: { ...base, RMBERT_ASSERTION_ENABLED: 'false' } }).assertion.enabled, false);
});

test('a hospital lexicon file must exist, and is refused while assertions are off', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rmbert-lexicon-'));
  try {
    const file = path.join(dir, 'ours.tsv');
    await writeFile(file, 'trigger\tproperty\tdirection\tkind\treach\ttypes\tnote\n罹患\thistory\tforward\ttrigger\tsentence\t\thospital phrasing\n');
    assert.equal(buildConfig({ env: { ...base, RMBERT_ASSERTION_LEXICON: file } }).assertion.lexiconFile, file);
    assert.deepEqual(problems(() => buildConfig({ env: { ...base, RMBERT_ASSERTION_LEXICON: path.join(dir, 'missing.tsv') } })), [
      `assertion.lexiconFile: file ${path.join(dir, 'missing.tsv')} does not exist (RMBERT_ASSERTION_LEXICON)`,
    ]);
    assert.match(problems(() => buildConfig({ env: base, flags: { 'assertion-lexicon': file, assertion: false } })).join('\n'), /assertion.lexiconFile: set, but assertion.enabled is false/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('the composition root adds the hospital lexicon to the shipped one; a malformed file is a configuration error; off gives no assessor', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rmbert-lexicon-'));
  try {
    const file = path.join(dir, 'ours.tsv');
    await writeFile(file, 'trigger\tproperty\tdirection\tkind\treach\ttypes\tnote\n罹患\thistory\tforward\ttrigger\tsentence\t\thospital phrasing\n');
    const entity = [{ start: 2, end: 5, type: 'Disease' }];
    const shippedOnly = createAssertionAssessor({ enabled: true, lexiconFile: null })!;
    const withOurs = createAssertionAssessor({ enabled: true, lexiconFile: file })!;
    assert.equal(shippedOnly.annotate('罹患糖尿病。', entity)[0].temporality, 'current');
    assert.equal(withOurs.annotate('罹患糖尿病。', entity)[0].temporality, 'historical');
    // The shipped rules still apply beside the hospital's.
    assert.equal(withOurs.annotate('否认糖尿病。', entity)[0].polarity, 'absent');

    const bad = path.join(dir, 'bad.tsv');
    await writeFile(bad, 'trigger\tproperty\tdirection\tkind\n罹患\tpast\tforward\ttrigger\n');
    const found = problems(() => createAssertionAssessor({ enabled: true, lexiconFile: bad }));
    assert.match(found[0], /^assertion\.lexiconFile: .*bad\.tsv:2: property must be one of/);

    assert.equal(createAssertionAssessor({ enabled: false, lexiconFile: null }), null);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
