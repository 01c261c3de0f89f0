/**
 * The import rules of the code map (README "Code map"; the folders of src/ and what each may import),
 * checked by `npm run deps` and by the README's test command (scripts/test.sh, beside typecheck and lint).
 * A forbidden import fails the run with the rule's name and the offending edge.
 */
/** Folder -> the folders of src/ it may import (besides itself). cli is the composition root: anything. */
const MAY_IMPORT = {
  domain: [],
  errors: [],
  config: ['errors'],
  knowledge: ['domain', 'errors'],
  model: ['domain', 'errors'],
  assertion: ['domain', 'errors'],
  pipeline: ['domain', 'errors'],
  metrics: ['domain'],
  train: ['model', 'knowledge', 'domain', 'errors'],
  // stream reads its settings' types from config (type-only imports; rule stream-config-types-only).
  stream: ['domain', 'errors', 'pipeline'],
  review: ['domain', 'errors', 'config', 'pipeline'],
};

/** Third-party package -> the only folders of src/ that may import it. */
const PACKAGE_HOMES = {
  kafkajs: ['stream'],
  avsc: ['stream'],
  'neo4j-driver': ['knowledge'],
  'prom-client': ['metrics'],
  '@tensorflow': ['model', 'train'],
  'onnxruntime-node': ['model'],
  'onnx-proto': ['model'],
  fastify: ['review'],
  '@fastify': ['review'],
};

const escape = (s) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

const folderRules = Object.entries(MAY_IMPORT).map(([folder, allowed]) => ({
  name: `${folder}-imports`,
  comment: `src/${folder} may import only ${allowed.length ? allowed.map((f) => `src/${f}`).join(', ') : 'nothing else in src/'}`,
  severity: 'error',
  from: { path: `^src/${folder}/` },
  to: {
    path: '^src/',
    pathNot: `^src/(${[folder, ...allowed, ...(folder === 'stream' ? ['config'] : [])].join('|')})/`,
  },
}));

const packageRules = Object.entries(PACKAGE_HOMES).map(([pkg, homes]) => ({
  name: `${pkg.replace('@', '')}-home`,
  comment: `${pkg} is imported in ${homes.map((f) => `src/${f}`).join(' and ')} only (src/cli wires it)`,
  severity: 'error',
  from: { path: '^src/', pathNot: `^src/(${homes.join('|')})/` },
  to: { path: `node_modules/${escape(pkg)}(/|$)` },
}));

module.exports = {
  forbidden: [
    ...folderRules,
    {
      name: 'stream-config-types-only',
      comment: 'src/stream takes its settings as values from the composition root; it may import their types only',
      severity: 'error',
      from: { path: '^src/stream/' },
      to: { path: '^src/config/', dependencyTypesNot: ['type-only'] },
    },
    ...packageRules,
    {
      name: 'no-circular',
      comment: 'no import cycles in src/',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    exclude: { path: '(^|/)(\\.cache|\\.venv)/' },
  },
};
