/** The review page's settings: defaults, validation with every problem listed, the tokens file. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { buildReviewConfig, reviewFlagClashes, sha256Hex } from '../../../src/config/review.ts';
import { ConfigError } from '../../../src/errors/index.ts';

const dir = mkdtempSync(path.join(os.tmpdir(), 'rmbert-review-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('defaults: loopback, tokens required, patient reference hidden, the five types', () => {
  const file = path.join(dir, 'tokens');
  writeFileSync(file, '# reviewers\nr-1 aaaaaaaaaaaaaaaa1\n\nr-2   bbbbbbbbbbbbbbbb2\n');
  const c = buildReviewConfig({ env: { RMBERT_REVIEW_TOKENS_FILE: file } });
  assert.equal(c.host, '127.0.0.1');
  assert.equal(c.port, 8765);
  assert.equal(c.showPatientRef, false);
  assert.deepEqual(c.types, ['Disease', 'Symptom', 'BodyPart', 'Examine', 'Cure']);
  assert.deepEqual(c.reviewers, [{ reviewer: 'r-1', tokenSha256: sha256Hex('aaaaaaaaaaaaaaaa1') }, { reviewer: 'r-2', tokenSha256: sha256Hex('bbbbbbbbbbbbbbbb2') }]);
  assert.ok(Object.isFrozen(c));
});

test('every problem is listed, and no token is quoted', () => {
  const file = path.join(dir, 'bad-tokens');
  writeFileSync(file, 'r-1 tiny-tok\nr-2 same-token-same-token\nr-3 same-token-same-token\nbad id here\n');
  try {
    buildReviewConfig({ env: { RMBERT_REVIEW_TOKENS_FILE: file, RMBERT_REVIEW_PORT: '70000', RMBERT_REVIEW_SHOW_PATIENT_REF: 'maybe', RMBERT_REVIEW_ALLOWED_ORIGINS: 'evil' } });
    assert.fail('accepted');
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    const text = error.problems.join('\n');
    assert.match(text, /line 1: the token is shorter than 16/);
    assert.match(text, /line 3: the same token is given to two reviewers/);
    assert.match(text, /line 4: expected "reviewer-id token"/);
    assert.match(text, /review.port .*70000 is outside/);
    assert.match(text, /showPatientRef .*not a boolean/);
    assert.match(text, /allowedOrigins: "evil"/);
    assert.ok(!text.includes('same-token-same-token') && !text.includes('tiny-tok'), text);
  }
  assert.throws(() => buildReviewConfig({ env: {} }), /tokensFile: required unless review.proxyUserHeader/);
  assert.throws(() => buildReviewConfig({ env: { RMBERT_REVIEW_TOKENS_FILE: path.join(dir, 'nope') } }), /does not exist/);
  assert.equal(buildReviewConfig({ env: { RMBERT_REVIEW_PROXY_USER_HEADER: 'X-Forwarded-User' } }).proxyUserHeader, 'x-forwarded-user');
});

test('no flag of the page clashes with a flag of the stage', () => {
  assert.deepEqual(reviewFlagClashes(), []);
});
