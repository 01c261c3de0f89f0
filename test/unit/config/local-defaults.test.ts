/**
 * A fresh clone against the local servers: the defaults reach what scripts/infra.sh starts, the
 * addresses `infra.sh env` prints are the ones the commands read, shipped files are found from any
 * directory, and `rmbert kg` reads the same Neo4j settings as `serve`.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { buildConfig, buildGraphStoreConfig, LOCAL_NEO4J_PASSWORD, PACKAGE_ROOT } from '../../../src/config/index.ts';
import { REPO_ROOT } from '../../helpers/paths.ts';

/** What `eval "$(scripts/infra.sh env)"` would export, with the servers' ports and password given. */
function infraEnv(overrides: Record<string, string>): Record<string, string> {
  const out = execFileSync('bash', [path.join(REPO_ROOT, 'scripts/infra.sh'), 'env'], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...overrides },
    encoding: 'utf8',
  });
  const env: Record<string, string> = {};
  for (const line of out.split('\n')) {
    const m = /^export ([A-Z0-9_]+)=(.*)$/.exec(line);
    if (m) env[m[1]] = m[2];
  }
  return env;
}

test('with no settings at all, serve is configured for the local servers (password included)', () => {
  const c = buildConfig({ env: {} });
  assert.equal(c.neo4j.password, LOCAL_NEO4J_PASSWORD);
  const fromInfra = infraEnv({});
  assert.equal(c.neo4j.password, fromInfra.RMBERT_NEO4J_PASSWORD);
  assert.equal(c.neo4j.uri, fromInfra.RMBERT_NEO4J_URI);
  assert.deepEqual(c.kafka.brokers, [fromInfra.RMBERT_KAFKA_BROKERS]);
  // An explicitly empty password is still refused: it is never what anyone means.
  assert.throws(() => buildConfig({ env: { RMBERT_NEO4J_PASSWORD: '' } }), /neo4j\.password: required/);
});

test('scripts/infra.sh env prints the names serve and kg read, for the ports and password it uses', () => {
  const env = infraEnv({ RMBERT_KAFKA_PORT: '29092', RMBERT_NEO4J_PORT: '27687', RMBERT_INFRA_NEO4J_PASSWORD: 'elsewhere' });
  const c = buildConfig({ env });
  assert.deepEqual(c.kafka.brokers, ['127.0.0.1:29092']);
  assert.equal(c.neo4j.uri, 'bolt://127.0.0.1:27687');
  assert.equal(c.neo4j.user, 'neo4j');
  assert.equal(c.neo4j.password, 'elsewhere');
  const store = buildGraphStoreConfig({ env });
  assert.deepEqual(store.neo4j, c.neo4j);
  // The test suite's names are still there for scripts/test.sh.
  assert.equal(env.RMBERT_TEST_KAFKA_BROKERS, '127.0.0.1:29092');
  assert.equal(env.RMBERT_TEST_NEO4J_PASSWORD, 'elsewhere');
});

test('default model and graph are the package\'s, whatever the current directory; given paths stay as given', () => {
  const c = buildConfig({ env: {} });
  assert.equal(c.model.dir, path.join(REPO_ROOT, 'models/medical'));
  assert.equal(c.knowledge.kgFile, path.join(REPO_ROOT, 'data/kg/Medical.spo'));
  assert.equal(PACKAGE_ROOT, REPO_ROOT);
  const given = buildConfig({ env: { RMBERT_MODEL_DIR: 'my/model' }, flags: { 'kg-file': 'package.json' } });
  assert.equal(given.model.dir, 'my/model');
  assert.equal(given.knowledge.kgFile, 'package.json');
  // Embedded mode checks that the default graph exists: from the package, not from the current directory.
  const cwd = process.cwd();
  try {
    process.chdir('/');
    assert.equal(buildConfig({ env: { RMBERT_EMBEDDED: 'true' } }).knowledge.kgFile, path.join(REPO_ROOT, 'data/kg/Medical.spo'));
  } finally {
    process.chdir(cwd);
  }
});

test('the graph-store settings (rmbert kg): serve\'s variables and defaults, flags first, nothing else validated', () => {
  const env = { RMBERT_NEO4J_URI: 'bolt://db:7687', RMBERT_NEO4J_USER: 'loader', RMBERT_NEO4J_PASSWORD: 'pw', RMBERT_KG_GRAPH: 'staging', RMBERT_BATCH_MAX_RECORDS: 'many' };
  const store = buildGraphStoreConfig({ env });
  assert.deepEqual(store, { neo4j: { uri: 'bolt://db:7687', user: 'loader', password: 'pw', database: null }, graphName: 'staging' });
  assert.ok(Object.isFrozen(store) && Object.isFrozen(store.neo4j));
  const flagged = buildGraphStoreConfig({ env, flags: { 'neo4j-password': 'other', 'kg-graph': 'g2', 'neo4j-database': 'kg' } });
  assert.equal(flagged.neo4j.password, 'other');
  assert.equal(flagged.neo4j.database, 'kg');
  assert.equal(flagged.graphName, 'g2');
  assert.deepEqual(buildGraphStoreConfig({ env: {} }).neo4j, buildConfig({ env: {} }).neo4j);
  assert.throws(() => buildGraphStoreConfig({ env: { RMBERT_NEO4J_URI: 'http://x', RMBERT_KG_GRAPH: '' } }), (e: Error) => /neo4j\.uri/.test(e.message) && /knowledge\.graphName/.test(e.message));
});
