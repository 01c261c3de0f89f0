import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ModelError } from '../../../src/errors/index.ts';
import { SILENT_LOGGER } from '../../../src/pipeline/logging.ts';
import { ModelDirectoryWatcher, ModelSwitcher, type ModelCatalogEntry } from '../../../src/pipeline/model-swap.ts';
import { NO_STAGE_METRICS } from '../../../src/pipeline/ports.ts';
import { FakeLoader, FakeModel } from './fakes.ts';

test('a requested model is staged in the background and installed only at a batch boundary', async () => {
  const v1 = new FakeModel({ name: 'm', hash: '111111111111' });
  const v2 = new FakeModel({ name: 'm', hash: '222222222222' });
  const switcher = new ModelSwitcher(new FakeLoader({ '/v1': v1, '/v2': v2 }), SILENT_LOGGER, NO_STAGE_METRICS);
  await switcher.start({ location: '/v1', reason: 'startup' });
  assert.equal(await switcher.request({ location: '/v2', sha256: '2222222222223333', reason: 'model-update' }), 'staged');
  assert.equal(switcher.current, v1, 'still serving the old model until the boundary');
  assert.equal(await switcher.installStaged(), true);
  assert.equal(switcher.current, v2);
  assert.equal(v1.disposed, true, 'the old model is released after the switch');
  assert.equal(await switcher.installStaged(), false);
  await switcher.close();
});

test('a bad or tampered artifact is refused and the old model keeps serving', async () => {
  const v1 = new FakeModel({ hash: '111111111111' });
  const switcher = new ModelSwitcher(
    new FakeLoader({ '/v1': v1, '/tampered': new ModelError('weights.safetensors has sha256 abc, the manifest says def') }),
    SILENT_LOGGER,
    NO_STAGE_METRICS,
  );
  await switcher.start({ location: '/v1', reason: 'startup' });
  assert.equal(await switcher.request({ location: '/tampered', reason: 'model-update' }), 'refused');
  assert.equal(await switcher.request({ location: '/missing', reason: 'model-update' }), 'refused');
  assert.equal(await switcher.installStaged(), false);
  assert.equal(switcher.current, v1);
  assert.equal(v1.disposed, false);
  await switcher.close();
});

test('the artifact already serving (same manifest hash) is not loaded again', async () => {
  const v1 = new FakeModel({ hash: 'abcdefabcdef' });
  const loader = new FakeLoader({ '/v1': v1 });
  const switcher = new ModelSwitcher(loader, SILENT_LOGGER, NO_STAGE_METRICS);
  await switcher.start({ location: '/v1', reason: 'startup' });
  assert.equal(await switcher.request({ location: '/v1', sha256: 'ABCDEFABCDEF0000', reason: 'model-update' }), 'unchanged');
  assert.equal(loader.requests.length, 1);
  await switcher.close();
});

test('the directory watcher requests a new artifact once, and not a refused one again', async () => {
  const v1 = new FakeModel({ hash: '111111111111' });
  const v2 = new FakeModel({ hash: '222222222222' });
  const loader = new FakeLoader({ '/v1': v1, '/v2': v2, '/bad': new ModelError('bad') });
  const switcher = new ModelSwitcher(loader, SILENT_LOGGER, NO_STAGE_METRICS);
  await switcher.start({ location: '/v1', reason: 'startup' });
  let entry: ModelCatalogEntry = { location: '/v1', sha256: '1111111111119999' };
  const watcher = new ModelDirectoryWatcher({ latest: async () => entry }, switcher, 0, SILENT_LOGGER);
  watcher.start(entry.sha256);
  assert.equal(await watcher.poll(), null, 'nothing new');
  entry = { location: '/bad', sha256: 'bbbbbbbbbbbb0000' };
  assert.equal(await watcher.poll(), 'refused');
  assert.equal(await watcher.poll(), null, 'a refused artifact is not retried');
  entry = { location: '/v2', sha256: '2222222222220000' };
  assert.equal(await watcher.poll(), 'staged');
  await switcher.installStaged();
  assert.equal(switcher.current, v2);
  assert.deepEqual(loader.requests.map((r) => r.location), ['/v1', '/bad', '/v2']);
  watcher.stop();
  await switcher.close();
});
