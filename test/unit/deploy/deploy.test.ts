/**
 * The deployment files cannot be run here (no Docker, no cluster), so they are checked as data:
 * every YAML parses, images and tags are the intended ones, the stage's settings are complete and
 * pass the real configuration validation, probes and scrape targets point at the metrics port,
 * autoscaling never exceeds the input topic's partitions, and the dashboard queries only metrics the
 * stage exports.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { parse, parseAllDocuments } from 'yaml';
import { buildConfig, SETTINGS } from '../../../src/config/index.ts';
import { TRAINER_SETTINGS } from '../../../src/config/trainer.ts';
import { PromStageMetrics } from '../../../src/metrics/index.ts';
import { REPO_ROOT } from '../../helpers/paths.ts';

const DEPLOY = path.join(REPO_ROOT, 'deploy');
const read = (...parts: string[]): string => readFileSync(path.join(DEPLOY, ...parts), 'utf8');

type Obj = Record<string, any>;

/** The stage's environment contract: names and the values every deployment must agree on. */
const STAGE_ENV_DEFAULTS: Record<string, string> = {
  RMBERT_INPUT_TOPIC: 'emr.documents',
  RMBERT_OUTPUT_TOPIC: 'emr.entities',
  RMBERT_DLQ_TOPIC: 'emr.documents.dlq',
  RMBERT_FEEDBACK_TOPIC: 'emr.feedback',
  RMBERT_MODEL_UPDATES_TOPIC: 'emr.model-updates',
  RMBERT_METRICS_PORT: '9464',
  RMBERT_GROUP_ID: 'rmbert-stage',
};
const STAGE_ENV_NAMES = [
  'RMBERT_KAFKA_BROKERS',
  'RMBERT_NEO4J_URI',
  'RMBERT_NEO4J_USER',
  'RMBERT_NEO4J_PASSWORD',
  'RMBERT_MODEL_DIR',
  'RMBERT_ENGINE',
  ...Object.keys(STAGE_ENV_DEFAULTS),
];
const METRICS_PORT = 9464;
const INPUT_PARTITIONS = 6;

function yamlFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return yamlFiles(full);
    return /\.ya?ml$/.test(entry.name) ? [full] : [];
  });
}

/** Environment values as strings, the way a container sees them. */
function stringEnv(env: Obj): Record<string, string> {
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, String(v)]));
}

/** Dockerfile instructions: continuation lines joined, comments dropped. */
function dockerInstructions(text: string): { op: string; args: string }[] {
  const joined = text.replace(/\\\r?\n(\s*#.*\r?\n)*/g, ' ');
  return joined
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const [op, ...rest] = line.split(/\s+/);
      return { op: op.toUpperCase(), args: rest.join(' ') };
    });
}

/** Resolves the compose default syntax ${NAME:-default} to its default (what an empty .env gives). */
const composeDefaults = (value: string): string => value.replace(/\$\{[A-Z0-9_]+:-([^}]*)\}/g, '$1');

const compose = parse(read('docker-compose.yml'), { merge: true }) as Obj;
const services = compose.services as Obj;
const k8sDocs: Obj[] = yamlFiles(path.join(DEPLOY, 'k8s')).flatMap((file) =>
  parseAllDocuments(readFileSync(file, 'utf8')).map((doc) => doc.toJS() as Obj),
);
const k8s = (kind: string, name: string): Obj => {
  const found = k8sDocs.find((d) => d.kind === kind && d.metadata?.name === name);
  assert.ok(found, `deploy/k8s has no ${kind} ${name}`);
  return found;
};
const kafkaPomVersion = (() => {
  const pom = readFileSync(path.join(REPO_ROOT, 'infra/kafka/pom.xml'), 'utf8');
  const match = /<artifactId>kafka_2\.13<\/artifactId>\s*<version>([^<]+)<\/version>/.exec(pom);
  assert.ok(match, 'infra/kafka/pom.xml names kafka_2.13 with a version');
  return match[1];
})();

describe('deploy/: every YAML file', () => {
  const files = yamlFiles(DEPLOY);

  test('there are compose, Prometheus, Grafana and Kubernetes files', () => {
    const relative = files.map((f) => path.relative(DEPLOY, f)).sort();
    for (const expected of [
      'docker-compose.yml',
      'prometheus/prometheus.yml',
      'grafana/provisioning/datasources/prometheus.yml',
      'grafana/provisioning/dashboards/rmbert.yml',
      'k8s/stage-deployment.yaml',
      'k8s/trainer-deployment.yaml',
      'k8s/configmap.yaml',
    ]) {
      assert.ok(relative.includes(expected), `missing deploy/${expected} (have ${relative.join(', ')})`);
    }
  });

  for (const file of files) {
    test(`${path.relative(REPO_ROOT, file)} parses without errors or warnings`, () => {
      for (const doc of parseAllDocuments(readFileSync(file, 'utf8'), { merge: true })) {
        assert.deepEqual(doc.errors.map(String), []);
        assert.deepEqual(doc.warnings.map(String), []);
      }
    });
  }
});

describe('deploy/docker-compose.yml', () => {
  test('has Kafka, Neo4j, the stage, the trainer, Prometheus and Grafana', () => {
    for (const name of ['kafka', 'neo4j', 'stage', 'trainer', 'prometheus', 'grafana']) {
      assert.ok(services[name], `no service ${name}`);
    }
  });

  test('Kafka is the 3.9 line used locally, in KRaft mode, ready for transactions', () => {
    const kafka = services.kafka;
    assert.equal(kafka.image, `apache/kafka:${kafkaPomVersion}`);
    assert.match(kafkaPomVersion, /^3\.9\.\d+$/);
    const env = stringEnv(kafka.environment);
    assert.deepEqual(env.KAFKA_PROCESS_ROLES.split(',').sort(), ['broker', 'controller']);
    assert.match(env.KAFKA_CONTROLLER_QUORUM_VOTERS, /^1@kafka:\d+$/);
    assert.equal(env.KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR, '1');
    assert.equal(env.KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR, '1');
    assert.equal(env.KAFKA_TRANSACTION_STATE_LOG_MIN_ISR, '1');
    assert.ok(env.KAFKA_ADVERTISED_LISTENERS.includes('PLAINTEXT://kafka:9092'));
    // The stage's brokers setting points at that listener.
    assert.equal(String(services.stage.environment.RMBERT_KAFKA_BROKERS), 'kafka:9092');
  });

  test('the topic service creates the input topic with as many partitions as the stage may have consumers', () => {
    const script = (services['kafka-topics'].command as string[]).join('\n');
    assert.match(script, new RegExp(`create emr\\.documents ${INPUT_PARTITIONS}\\b`));
    for (const topic of Object.values(STAGE_ENV_DEFAULTS).filter((v) => v.startsWith('emr.'))) {
      assert.ok(script.includes(`create ${topic} `), `topic ${topic} is not created`);
    }
    assert.equal(services['kafka-topics'].image, services.kafka.image);
  });

  test('Neo4j is 5.26 Community with the password the stage uses', () => {
    assert.match(services.neo4j.image, /^neo4j:5\.26(\.\d+)?-community$/);
    const auth = composeDefaults(String(services.neo4j.environment.NEO4J_AUTH));
    const password = composeDefaults(String(services.stage.environment.RMBERT_NEO4J_PASSWORD));
    assert.equal(auth, `neo4j/${password}`);
    assert.equal(String(services.stage.environment.RMBERT_NEO4J_URI), 'bolt://neo4j:7687');
  });

  test('the stage runs `rmbert serve`, the trainer `rmbert train`, both from deploy/Dockerfile', () => {
    assert.deepEqual(services.stage.command, ['serve']);
    assert.deepEqual(services.trainer.command, ['train']);
    for (const name of ['stage', 'trainer']) {
      assert.equal(services[name].build.dockerfile, 'deploy/Dockerfile');
      assert.equal(services[name].build.context, '..');
    }
  });

  test('the stage has every required setting, with the agreed values, and publishes the metrics port', () => {
    const env = stringEnv(services.stage.environment);
    for (const name of STAGE_ENV_NAMES) assert.ok(name in env, `stage environment lacks ${name}`);
    for (const [name, value] of Object.entries(STAGE_ENV_DEFAULTS)) assert.equal(env[name], value, name);
    assert.ok((services.stage.ports as string[]).some((p) => p.endsWith(`:${METRICS_PORT}`)));
  });

  test('every RMBERT_ variable given to a service is a known setting', () => {
    const known = new Set([...SETTINGS, ...TRAINER_SETTINGS].map((s) => s.env));
    for (const [name, service] of Object.entries(services)) {
      for (const key of Object.keys((service as Obj).environment ?? {})) {
        if (key.startsWith('RMBERT_')) assert.ok(known.has(key), `${name}: ${key} is not a setting (typo?)`);
      }
    }
  });

  test("the stage's and the trainer's environments pass the real configuration validation", () => {
    for (const name of ['stage', 'trainer']) {
      const env = Object.fromEntries(
        Object.entries(stringEnv(services[name].environment)).map(([k, v]) => [k, composeDefaults(v)]),
      );
      const config = buildConfig({ env });
      assert.equal(config.metrics.port, METRICS_PORT);
      assert.equal(config.topics.input, 'emr.documents');
      assert.equal(config.topicPartitions, INPUT_PARTITIONS);
    }
    assert.notEqual(services.trainer.environment.RMBERT_GROUP_ID, services.stage.environment.RMBERT_GROUP_ID);
  });

  test('Prometheus scrapes /metrics of the stage service on the metrics port', () => {
    const prometheus = parse(read('prometheus', 'prometheus.yml')) as Obj;
    const job = (prometheus.scrape_configs as Obj[]).find((j) => j.job_name === 'rmbert-stage');
    assert.ok(job, 'no rmbert-stage scrape job');
    assert.equal(job.metrics_path ?? '/metrics', '/metrics');
    const targets: string[] = [
      ...((job.static_configs ?? []) as Obj[]).flatMap((c) => c.targets as string[]),
      ...((job.dns_sd_configs ?? []) as Obj[]).flatMap((c) => (c.names as string[]).map((n) => `${n}:${c.port}`)),
    ];
    assert.deepEqual(targets, [`stage:${services.stage.environment.RMBERT_METRICS_PORT}`]);
    assert.ok(
      (services.prometheus.volumes as string[]).some((v) => v.startsWith('./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml')),
      'compose mounts a different Prometheus configuration',
    );
  });

  test('Grafana is provisioned with the Prometheus datasource and the stage dashboard', () => {
    const datasources = (parse(read('grafana', 'provisioning', 'datasources', 'prometheus.yml')) as Obj).datasources as Obj[];
    assert.equal(datasources.length, 1);
    assert.equal(datasources[0].type, 'prometheus');
    const promPort = (services.prometheus.ports as string[])[0].split(':').at(-1);
    assert.equal(datasources[0].url, `http://prometheus:${promPort}`);
    const providers = (parse(read('grafana', 'provisioning', 'dashboards', 'rmbert.yml')) as Obj).providers as Obj[];
    const volumes = services.grafana.volumes as string[];
    assert.ok(volumes.includes('./grafana/provisioning:/etc/grafana/provisioning:ro'));
    assert.ok(volumes.includes(`./grafana/dashboards:${providers[0].options.path}:ro`));

    const dashboard = JSON.parse(read('grafana', 'dashboards', 'rmbert-stage.json')) as Obj;
    const panels = dashboard.panels as Obj[];
    assert.ok(panels.length >= 6);
    for (const panel of panels) {
      assert.equal(panel.datasource.uid, datasources[0].uid, `panel ${panel.title} uses another datasource`);
    }
  });

  test('every metric the dashboard queries is exported by the stage', async () => {
    const dashboard = JSON.parse(read('grafana', 'dashboards', 'rmbert-stage.json')) as Obj;
    const exprs = (dashboard.panels as Obj[]).flatMap((p) => (p.targets as Obj[]).map((t) => t.expr as string));
    const metrics = new PromStageMetrics();
    const exported = new Set((await metrics.registry.getMetricsAsJSON()).map((m) => m.name));
    const queried = new Set(exprs.flatMap((e) => e.match(/\brmbert_[a-z0-9_]+/g) ?? []));
    assert.ok(queried.size >= 8, `only ${queried.size} metrics queried`);
    for (const name of queried) {
      const base = name.replace(/_(bucket|sum|count)$/, '');
      assert.ok(exported.has(name) || exported.has(base), `dashboard queries ${name}, which the stage does not export`);
    }
  });
});

describe('deploy/k8s', () => {
  test('every manifest has apiVersion, kind and a name, in one namespace', () => {
    assert.ok(k8sDocs.length >= 8);
    for (const doc of k8sDocs.filter((d) => d.kind !== 'Kustomization')) {
      assert.ok(doc.apiVersion && doc.kind && doc.metadata?.name, JSON.stringify(doc).slice(0, 120));
      if (doc.kind !== 'Namespace') assert.equal(doc.metadata.namespace, 'rmbert', `${doc.kind} ${doc.metadata.name}`);
    }
    const kustomization = k8sDocs.find((d) => d.kind === 'Kustomization');
    assert.ok(kustomization);
    const listed = new Set(kustomization.resources as string[]);
    const onDisk = readdirSync(path.join(DEPLOY, 'k8s')).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
    assert.deepEqual([...listed].sort(), onDisk.sort());
  });

  const config = k8s('ConfigMap', 'rmbert-config').data as Record<string, string>;
  const secret = k8s('Secret', 'rmbert-neo4j').stringData as Record<string, string>;

  test('every RMBERT_ variable in the ConfigMap, the Secret and the pods is a known setting', () => {
    const known = new Set([...SETTINGS, ...TRAINER_SETTINGS].map((s) => s.env));
    const names = [
      ...Object.keys(config),
      ...Object.keys(secret),
      ...k8sDocs
        .filter((d) => d.kind === 'Deployment')
        .flatMap((d) => (d.spec.template.spec.containers as Obj[]).flatMap((c) => ((c.env ?? []) as Obj[]).map((e) => e.name as string))),
    ].filter((n) => n.startsWith('RMBERT_'));
    for (const name of names) assert.ok(known.has(name), `${name} is not a setting (typo?)`);
  });

  test('the ConfigMap and Secret hold every stage setting, and they pass the real validation', () => {
    const env = { ...config, ...secret };
    for (const name of STAGE_ENV_NAMES) assert.ok(name in env, `missing ${name}`);
    for (const [name, value] of Object.entries(STAGE_ENV_DEFAULTS)) assert.equal(env[name], value, name);
    for (const value of Object.values(config)) assert.equal(typeof value, 'string', 'ConfigMap values must be strings');
    const parsed = buildConfig({ env });
    assert.equal(parsed.metrics.port, METRICS_PORT);
    assert.ok(!('RMBERT_NEO4J_PASSWORD' in config), 'the password belongs in the Secret, not the ConfigMap');
  });

  const stage = k8s('Deployment', 'rmbert-stage');
  const stagePod = stage.spec.template.spec as Obj;
  const stageContainer = (stagePod.containers as Obj[])[0];

  test('the stage Deployment runs `serve` with the settings, the metrics port and resource requests', () => {
    assert.deepEqual(stageContainer.args, ['serve']);
    assert.match(stageContainer.image, /^rmbert-stream:/);
    const refs = (stageContainer.envFrom as Obj[]).map((e) => e.configMapRef?.name ?? e.secretRef?.name);
    assert.deepEqual(refs.sort(), ['rmbert-config', 'rmbert-neo4j']);
    assert.deepEqual(
      (stageContainer.ports as Obj[]).map((p) => p.containerPort),
      [Number(config.RMBERT_METRICS_PORT)],
    );
    assert.ok(stageContainer.resources.requests.cpu && stageContainer.resources.requests.memory);
    assert.deepEqual(stage.spec.selector.matchLabels, {
      'app.kubernetes.io/name': stage.spec.template.metadata.labels['app.kubernetes.io/name'],
    });
  });

  test('liveness probes /healthz and readiness /readyz on the metrics port', () => {
    const port = (p: Obj): number => {
      const value = p.httpGet.port;
      if (typeof value === 'number') return value;
      return (stageContainer.ports as Obj[]).find((x) => x.name === value)?.containerPort;
    };
    assert.equal(stageContainer.livenessProbe.httpGet.path, '/healthz');
    assert.equal(port(stageContainer.livenessProbe), METRICS_PORT);
    assert.equal(stageContainer.readinessProbe.httpGet.path, '/readyz');
    assert.equal(port(stageContainer.readinessProbe), METRICS_PORT);
  });

  test('the stage never scales past the input topic partitions', () => {
    const hpa = k8s('HorizontalPodAutoscaler', 'rmbert-stage');
    assert.equal(hpa.spec.scaleTargetRef.kind, 'Deployment');
    assert.equal(hpa.spec.scaleTargetRef.name, stage.metadata.name);
    assert.equal(hpa.spec.maxReplicas, Number(config.RMBERT_TOPIC_PARTITIONS));
    assert.equal(hpa.spec.maxReplicas, INPUT_PARTITIONS);
    assert.ok(hpa.spec.minReplicas >= 1 && hpa.spec.minReplicas <= hpa.spec.maxReplicas);
    assert.ok(stage.spec.replicas <= hpa.spec.maxReplicas);
  });

  test('the metrics Service selects the stage pods on the metrics port', () => {
    const service = k8s('Service', 'rmbert-stage-metrics');
    const labels = stage.spec.template.metadata.labels as Record<string, string>;
    for (const [k, v] of Object.entries(service.spec.selector as Record<string, string>)) assert.equal(labels[k], v);
    const [port] = service.spec.ports as Obj[];
    assert.equal(port.port, METRICS_PORT);
    assert.ok(port.targetPort === METRICS_PORT || port.targetPort === stageContainer.ports[0].name);
    assert.equal(service.metadata.annotations['prometheus.io/port'], String(METRICS_PORT));
  });

  test('the trainer is one replica of `train`, recreated (never two at once), with its own group', () => {
    const trainer = k8s('Deployment', 'rmbert-trainer');
    assert.equal(trainer.spec.replicas, 1);
    assert.equal(trainer.spec.strategy.type, 'Recreate');
    const container = trainer.spec.template.spec.containers[0] as Obj;
    assert.deepEqual(container.args, ['train']);
    const group = (container.env as Obj[]).find((e) => e.name === 'RMBERT_GROUP_ID');
    assert.ok(group && group.value !== config.RMBERT_GROUP_ID);
    // Stage and trainer share the model volume: the trainer writes, the stage reads.
    const claim = (pod: Obj): string => (pod.volumes as Obj[])[0].persistentVolumeClaim.claimName;
    assert.equal(claim(trainer.spec.template.spec), claim(stagePod));
    assert.equal(k8s('PersistentVolumeClaim', claim(stagePod)).spec.accessModes[0], 'ReadWriteMany');
  });
});

describe('deploy/Dockerfile and deploy/Dockerfile.gpu', () => {
  const engines = SETTINGS.find((s) => s.env === 'RMBERT_ENGINE')?.values ?? [];
  const envOf = (instructions: { op: string; args: string }[]): Record<string, string> =>
    Object.fromEntries(
      instructions
        .filter((i) => i.op === 'ENV')
        .flatMap((i) => [...i.args.matchAll(/([A-Z0-9_]+)=("[^"]*"|\S+)/g)].map((m) => [m[1], m[2].replace(/^"|"$/g, '')])),
    );

  test('CPU image: node:20-bookworm-slim, npm ci with the ONNX Runtime download skipped, runs rmbert serve', () => {
    const steps = dockerInstructions(read('Dockerfile'));
    assert.deepEqual(steps.filter((s) => s.op === 'FROM').map((s) => s.args), ['node:20-bookworm-slim']);
    const env = envOf(steps);
    assert.equal(env.ONNXRUNTIME_NODE_INSTALL, 'skip');
    const ciIndex = steps.findIndex((s) => s.op === 'RUN' && /\bnpm ci\b/.test(s.args));
    const envIndex = steps.findIndex((s) => s.op === 'ENV' && s.args.includes('ONNXRUNTIME_NODE_INSTALL=skip'));
    assert.ok(ciIndex > envIndex && envIndex >= 0, 'ONNXRUNTIME_NODE_INSTALL=skip must be set before npm ci');
    assert.deepEqual(JSON.parse(steps.find((s) => s.op === 'ENTRYPOINT')!.args), ['node', 'bin/rmbert.js']);
    assert.deepEqual(JSON.parse(steps.find((s) => s.op === 'CMD')!.args), ['serve']);
    assert.ok(steps.some((s) => s.op === 'EXPOSE' && s.args === String(METRICS_PORT)));
    assert.equal(env.RMBERT_METRICS_PORT, String(METRICS_PORT));
  });

  test('GPU image: CUDA 11.8 + cuDNN 8 on Ubuntu 22.04, Node 20, installs tfjs-node-gpu, serves on TensorFlow.js', () => {
    const steps = dockerInstructions(read('Dockerfile.gpu'));
    const bases = steps.filter((s) => s.op === 'FROM').map((s) => s.args.split(/\s+/)[0]);
    assert.equal(bases.at(-1), 'nvidia/cuda:11.8.0-cudnn8-runtime-ubuntu22.04');
    assert.ok(bases.includes('node:20-bookworm-slim'), 'Node 20 comes from the official image');
    const pkg = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as Obj;
    const gpuVersion = pkg.optionalDependencies['@tensorflow/tfjs-node-gpu'];
    assert.ok(
      steps.some((s) => s.op === 'RUN' && s.args.includes(`npm install`) && s.args.includes(`@tensorflow/tfjs-node-gpu@${gpuVersion}`)),
      `the GPU image must install @tensorflow/tfjs-node-gpu@${gpuVersion} (the version package.json pins)`,
    );
    const env = envOf(steps);
    assert.equal(env.ONNXRUNTIME_NODE_INSTALL, 'skip');
    assert.ok(engines.includes(env.RMBERT_ENGINE), `RMBERT_ENGINE=${env.RMBERT_ENGINE} is not one of ${engines.join(', ')}`);
    assert.match(env.RMBERT_ENGINE, /^tfjs/);
    assert.deepEqual(JSON.parse(steps.find((s) => s.op === 'ENTRYPOINT')!.args), ['node', 'bin/rmbert.js']);
    assert.deepEqual(JSON.parse(steps.find((s) => s.op === 'CMD')!.args), ['serve']);
  });

  test('every RMBERT_ENGINE in deploy/ is a value the configuration accepts', () => {
    assert.ok(engines.length > 0);
    const values = [
      services.stage.environment.RMBERT_ENGINE,
      services.trainer.environment.RMBERT_ENGINE,
      k8s('ConfigMap', 'rmbert-config').data.RMBERT_ENGINE,
      envOf(dockerInstructions(read('Dockerfile.gpu'))).RMBERT_ENGINE,
    ];
    for (const value of values) assert.ok(engines.includes(String(value)), `RMBERT_ENGINE=${value}`);
  });

  test('the images copy what the CLI needs to run', () => {
    for (const file of ['Dockerfile', 'Dockerfile.gpu']) {
      const copies = dockerInstructions(read(file))
        .filter((s) => s.op === 'COPY' && !s.args.startsWith('--from'))
        .map((s) => s.args.split(/\s+/)[0]);
      for (const needed of ['package.json', 'bin', 'src', 'schemas']) {
        assert.ok(copies.includes(needed), `${file} does not copy ${needed}`);
      }
    }
  });
});
