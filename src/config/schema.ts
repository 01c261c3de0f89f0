/**
 * The stage's configuration: one table of settings (environment variable, command-line flag, type,
 * default, bounds), validated once at start into a typed, frozen object. Every problem is collected
 * and reported together in one ConfigError, so an operator fixes a deployment in one pass.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../errors/index.ts';

/**
 * The package's root directory. Defaults that name shipped files (the model, the graph) resolve
 * against it, so that `rmbert` works from any directory; paths a user gives stay relative to the
 * current directory, as everywhere else.
 */
export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** The password of user neo4j on the local server that scripts/infra.sh starts (RMBERT_INFRA_NEO4J_PASSWORD there). */
export const LOCAL_NEO4J_PASSWORD = 'rmbert-local';

export type EngineChoice = 'auto' | 'onnx' | 'tfjs';
export type SaslMechanism = 'plain' | 'scram-sha-256' | 'scram-sha-512';
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface KafkaConfig {
  brokers: readonly string[];
  clientId: string;
  ssl: boolean;
  /** PEM files for TLS; null = the system's trust store and no client certificate. */
  sslCaFile: string | null;
  sslCertFile: string | null;
  sslKeyFile: string | null;
  sslRejectUnauthorized: boolean;
  sasl: { mechanism: SaslMechanism; username: string; password: string } | null;
  connectionTimeoutMs: number;
  requestTimeoutMs: number;
  /** kafkajs retry policy for the consumer, producers and admin client. */
  retries: number;
  initialRetryMs: number;
  maxRetryMs: number;
  /**
   * Consumer group liveness. A member that dies without leaving (SIGKILL, a lost host) keeps its
   * partitions until the broker has heard no heartbeat for sessionTimeoutMs: that is most of the
   * takeover time after a crash. kafkajs 2.2.4 has no static membership (KIP-345), so a restarted
   * process always joins as a new member and waits for the dead one's session to expire.
   */
  sessionTimeoutMs: number;
  /** Heartbeats are sent this often (also while a micro-batch is being processed). */
  heartbeatIntervalMs: number;
  /** How long the coordinator waits for every member to rejoin in a rebalance (a busy member rejoins after its micro-batch). */
  rebalanceTimeoutMs: number;
  transactionTimeoutMs: number;
}

export interface TopicsConfig {
  input: string;
  output: string;
  deadLetter: string;
  feedback: string;
  modelUpdates: string;
  /** Documents of at least heavy.minCost characters are forwarded here (in the micro-batch's transaction) and annotated by the heavy-document lane. */
  heavy: string;
}

export interface StageConfig {
  kafka: KafkaConfig;
  topics: TopicsConfig;
  /** Consumer group of the stage; input offsets are committed for it inside each output transaction. */
  groupId: string;
  /** Prefix of the transactional ids; one producer per input partition: <prefix>-<topic>-<partition>. */
  transactionalIdPrefix: string;
  /** Create missing topics at start (partitions and replication below). */
  createTopics: boolean;
  topicPartitions: number;
  topicReplicationFactor: number;
  neo4j: { uri: string; user: string; password: string; database: string | null };
  knowledge: {
    /** False: serve without a knowledge graph (nothing injected; outputs carry an empty kgVersion). */
    enabled: boolean;
    /** LRU cache of concept -> triples. */
    cacheSize: number;
    /** Backoff of the background reconnection to the graph store while it is down. */
    retryInitialMs: number;
    retryMaxMs: number;
    /** Graph file for embedded mode (in-memory graph instead of Neo4j). */
    kgFile: string;
    /** Name of the graph inside the store (several graphs can share one Neo4j database). */
    graphName: string;
    /** How often the graph's version stamp is checked; a new version rebuilds the matcher without a restart. 0 = never. */
    versionPollMs: number;
  };
  assertion: {
    /** False: entities are not assessed (their assertion is null in the output record). */
    enabled: boolean;
    /** A hospital's trigger lexicon (same columns as data/assertion/triggers.tsv), used on top of the shipped one; null = none. */
    lexiconFile: string | null;
  };
  /**
   * A micro-batch closes when it holds maxRecords records, maxBytes bytes or documents of maxCost cost
   * (src/pipeline/cost.ts: characters of text plus a fixed amount per sentence, since inference time
   * grows with both), or after maxWaitMs, whichever first.
   */
  batch: { maxRecords: number; maxBytes: number; maxCost: number; maxWaitMs: number };
  /**
   * The heavy-document lane: a document of cost at least minCost is not annotated in its
   * partition's micro-batch (where it would hold every document behind it) but forwarded to
   * topics.heavy and annotated there by a second consumer of the same process, whose engine calls
   * yield to the normal lane's. 0 = no lane (every document in its micro-batch).
   */
  heavy: { minCost: number };
  /** A document longer than this (UTF-16 code units) is dead-lettered; shorter long ones are windowed. */
  maxTextChars: number;
  model: {
    dir: string;
    engine: EngineChoice;
    /** How often the model directory is checked for a new artifact; 0 turns the check off. */
    pollIntervalMs: number;
  };
  metrics: { port: number; host: string };
  shutdownDeadlineMs: number;
  /** Embedded mode: in-memory graph from knowledge.kgFile instead of Neo4j (no graph server needed). */
  embedded: boolean;
  logLevel: LogLevel;
  /** Distinguishes stage processes in logs and in the model-updates consumer group. */
  instanceId: string;
}

type Kind = 'string' | 'secret' | 'int' | 'bool' | 'list' | 'enum';

export interface Setting {
  /** Dotted path in StageConfig. */
  key: string;
  env: string;
  /** Command-line flag without the leading dashes. */
  flag: string;
  kind: Kind;
  default?: string;
  values?: readonly string[];
  min?: number;
  max?: number;
  doc: string;
  /** The default names a file shipped in the package: it resolves against PACKAGE_ROOT, not the current directory. */
  packagePath?: boolean;
}

export const SETTINGS: readonly Setting[] = [
  { key: 'kafka.brokers', env: 'RMBERT_KAFKA_BROKERS', flag: 'kafka-brokers', kind: 'list', default: '127.0.0.1:19092', doc: 'Kafka bootstrap servers, host:port, comma-separated' },
  { key: 'kafka.clientId', env: 'RMBERT_KAFKA_CLIENT_ID', flag: 'kafka-client-id', kind: 'string', default: 'rmbert-stage', doc: 'Kafka client id' },
  { key: 'kafka.ssl', env: 'RMBERT_KAFKA_SSL', flag: 'kafka-ssl', kind: 'bool', default: 'false', doc: 'connect to Kafka over TLS' },
  { key: 'kafka.sslCaFile', env: 'RMBERT_KAFKA_SSL_CA_FILE', flag: 'kafka-ssl-ca-file', kind: 'string', default: '', doc: 'PEM file of the CA that signed the brokers\' certificates' },
  { key: 'kafka.sslCertFile', env: 'RMBERT_KAFKA_SSL_CERT_FILE', flag: 'kafka-ssl-cert-file', kind: 'string', default: '', doc: 'PEM client certificate (mutual TLS)' },
  { key: 'kafka.sslKeyFile', env: 'RMBERT_KAFKA_SSL_KEY_FILE', flag: 'kafka-ssl-key-file', kind: 'string', default: '', doc: 'PEM client key (mutual TLS)' },
  { key: 'kafka.sslRejectUnauthorized', env: 'RMBERT_KAFKA_SSL_REJECT_UNAUTHORIZED', flag: 'kafka-ssl-reject-unauthorized', kind: 'bool', default: 'true', doc: 'refuse brokers whose certificate does not verify' },
  { key: 'kafka.saslMechanism', env: 'RMBERT_KAFKA_SASL_MECHANISM', flag: 'kafka-sasl-mechanism', kind: 'enum', values: ['', 'plain', 'scram-sha-256', 'scram-sha-512'], default: '', doc: 'SASL mechanism; empty = no SASL' },
  { key: 'kafka.saslUsername', env: 'RMBERT_KAFKA_SASL_USERNAME', flag: 'kafka-sasl-username', kind: 'string', default: '', doc: 'SASL user name' },
  { key: 'kafka.saslPassword', env: 'RMBERT_KAFKA_SASL_PASSWORD', flag: 'kafka-sasl-password', kind: 'secret', default: '', doc: 'SASL password' },
  { key: 'kafka.connectionTimeoutMs', env: 'RMBERT_KAFKA_CONNECTION_TIMEOUT_MS', flag: 'kafka-connection-timeout-ms', kind: 'int', default: '3000', min: 100, max: 120_000, doc: 'TCP connection timeout to a broker' },
  { key: 'kafka.requestTimeoutMs', env: 'RMBERT_KAFKA_REQUEST_TIMEOUT_MS', flag: 'kafka-request-timeout-ms', kind: 'int', default: '30000', min: 1000, max: 300_000, doc: 'timeout of one Kafka request' },
  { key: 'kafka.retries', env: 'RMBERT_KAFKA_RETRIES', flag: 'kafka-retries', kind: 'int', default: '8', min: 0, max: 100, doc: 'retries of a failed Kafka operation (kafkajs retry)' },
  { key: 'kafka.initialRetryMs', env: 'RMBERT_KAFKA_INITIAL_RETRY_MS', flag: 'kafka-initial-retry-ms', kind: 'int', default: '300', min: 10, max: 60_000, doc: 'first backoff of a Kafka retry' },
  { key: 'kafka.maxRetryMs', env: 'RMBERT_KAFKA_MAX_RETRY_MS', flag: 'kafka-max-retry-ms', kind: 'int', default: '10000', min: 100, max: 600_000, doc: 'longest backoff of a Kafka retry' },
  { key: 'kafka.sessionTimeoutMs', env: 'RMBERT_KAFKA_SESSION_TIMEOUT_MS', flag: 'kafka-session-timeout-ms', kind: 'int', default: '10000', min: 6000, max: 300_000, doc: 'consumer group session timeout: a crashed member\'s partitions wait this long for a new owner; shorter = faster takeover, but a process whose heartbeats stall longer (event loop blocked, CPU starved) loses its partitions (6000 is the broker\'s usual minimum)' },
  { key: 'kafka.heartbeatIntervalMs', env: 'RMBERT_KAFKA_HEARTBEAT_INTERVAL_MS', flag: 'kafka-heartbeat-interval-ms', kind: 'int', default: '1000', min: 100, max: 100_000, doc: 'consumer heartbeat interval; at most a third of the session timeout' },
  { key: 'kafka.rebalanceTimeoutMs', env: 'RMBERT_KAFKA_REBALANCE_TIMEOUT_MS', flag: 'kafka-rebalance-timeout-ms', kind: 'int', default: '60000', min: 1000, max: 900_000, doc: 'how long a rebalance waits for busy members to rejoin (a member rejoins after its current micro-batch); a member slower than this is dropped from the group' },
  { key: 'kafka.transactionTimeoutMs', env: 'RMBERT_KAFKA_TRANSACTION_TIMEOUT_MS', flag: 'kafka-transaction-timeout-ms', kind: 'int', default: '60000', min: 1000, max: 900_000, doc: 'broker-side timeout of an open transaction' },
  { key: 'topics.input', env: 'RMBERT_INPUT_TOPIC', flag: 'input-topic', kind: 'string', default: 'emr.documents', doc: 'topic of EmrDocument records' },
  { key: 'topics.output', env: 'RMBERT_OUTPUT_TOPIC', flag: 'output-topic', kind: 'string', default: 'emr.entities', doc: 'topic of EntityAnnotations records' },
  { key: 'topics.deadLetter', env: 'RMBERT_DLQ_TOPIC', flag: 'dlq-topic', kind: 'string', default: 'emr.documents.dlq', doc: 'topic of DeadLetter records' },
  { key: 'topics.feedback', env: 'RMBERT_FEEDBACK_TOPIC', flag: 'feedback-topic', kind: 'string', default: 'emr.feedback', doc: 'topic of Feedback records (read by the trainer)' },
  { key: 'topics.modelUpdates', env: 'RMBERT_MODEL_UPDATES_TOPIC', flag: 'model-updates-topic', kind: 'string', default: 'emr.model-updates', doc: 'topic of ModelUpdate records' },
  { key: 'topics.heavy', env: 'RMBERT_HEAVY_TOPIC', flag: 'heavy-topic', kind: 'string', default: '', doc: 'topic of the heavy-document lane (EmrDocument records forwarded by the stage); empty = <input topic>.heavy' },
  { key: 'heavy.minCost', env: 'RMBERT_HEAVY_DOC_COST', flag: 'heavy-doc-cost', kind: 'int', default: '20000', min: 0, max: 10_000_000, doc: 'documents of at least this cost (characters + 16 per sentence) are annotated in the heavy-document lane, so that they do not hold the documents behind them; 0 = no lane' },
  { key: 'groupId', env: 'RMBERT_GROUP_ID', flag: 'group-id', kind: 'string', default: 'rmbert-stage', doc: 'consumer group id of the stage' },
  { key: 'transactionalIdPrefix', env: 'RMBERT_TRANSACTIONAL_ID_PREFIX', flag: 'transactional-id-prefix', kind: 'string', default: 'rmbert-stage', doc: 'prefix of the transactional producer ids (one per input partition)' },
  { key: 'createTopics', env: 'RMBERT_CREATE_TOPICS', flag: 'create-topics', kind: 'bool', default: 'true', doc: 'create missing topics at start' },
  { key: 'topicPartitions', env: 'RMBERT_TOPIC_PARTITIONS', flag: 'topic-partitions', kind: 'int', default: '3', min: 1, max: 1000, doc: 'partitions of topics created at start' },
  { key: 'topicReplicationFactor', env: 'RMBERT_TOPIC_REPLICATION_FACTOR', flag: 'topic-replication-factor', kind: 'int', default: '1', min: 1, max: 10, doc: 'replication factor of topics created at start' },
  { key: 'neo4j.uri', env: 'RMBERT_NEO4J_URI', flag: 'neo4j-uri', kind: 'string', default: 'bolt://127.0.0.1:17687', doc: 'Neo4j Bolt URI' },
  { key: 'neo4j.user', env: 'RMBERT_NEO4J_USER', flag: 'neo4j-user', kind: 'string', default: 'neo4j', doc: 'Neo4j user' },
  { key: 'neo4j.password', env: 'RMBERT_NEO4J_PASSWORD', flag: 'neo4j-password', kind: 'secret', default: LOCAL_NEO4J_PASSWORD, doc: 'Neo4j password; the default is that of the local server scripts/infra.sh starts' },
  { key: 'neo4j.database', env: 'RMBERT_NEO4J_DATABASE', flag: 'neo4j-database', kind: 'string', default: '', doc: 'Neo4j database; empty = the server default' },
  { key: 'knowledge.enabled', env: 'RMBERT_KG_ENABLED', flag: 'kg', kind: 'bool', default: 'true', doc: 'use the knowledge graph (--no-kg: the model runs without injected knowledge)' },
  { key: 'knowledge.cacheSize', env: 'RMBERT_KG_CACHE_SIZE', flag: 'kg-cache-size', kind: 'int', default: '50000', min: 0, max: 10_000_000, doc: 'concepts kept in the knowledge LRU cache' },
  { key: 'knowledge.retryInitialMs', env: 'RMBERT_KG_RETRY_INITIAL_MS', flag: 'kg-retry-initial-ms', kind: 'int', default: '500', min: 10, max: 600_000, doc: 'first backoff of the reconnection to Neo4j while it is down' },
  { key: 'knowledge.retryMaxMs', env: 'RMBERT_KG_RETRY_MAX_MS', flag: 'kg-retry-max-ms', kind: 'int', default: '15000', min: 10, max: 3_600_000, doc: 'longest backoff of the reconnection to Neo4j' },
  { key: 'knowledge.kgFile', env: 'RMBERT_KG_FILE', flag: 'kg-file', kind: 'string', default: 'data/kg/Medical.spo', packagePath: true, doc: 'graph file (subject TAB relation TAB object) for embedded mode; the default is the one in the package' },
  { key: 'knowledge.graphName', env: 'RMBERT_KG_GRAPH', flag: 'kg-graph', kind: 'string', default: 'default', doc: 'name of the graph inside Neo4j (as loaded by rmbert kg load --graph)' },
  { key: 'knowledge.versionPollMs', env: 'RMBERT_KG_VERSION_POLL_MS', flag: 'kg-version-poll-ms', kind: 'int', default: '60000', min: 0, max: 86_400_000, doc: 'how often the graph version is checked (a reload is picked up without restart); 0 = never' },
  { key: 'assertion.enabled', env: 'RMBERT_ASSERTION_ENABLED', flag: 'assertion', kind: 'bool', default: 'true', doc: 'assess each entity: negated, uncertain, historical, someone else\'s (--no-assertion: the assertion field stays null)' },
  { key: 'assertion.lexiconFile', env: 'RMBERT_ASSERTION_LEXICON', flag: 'assertion-lexicon', kind: 'string', default: '', doc: 'extra trigger lexicon (TSV, the columns of data/assertion/triggers.tsv) used on top of the shipped one; empty = none' },
  { key: 'batch.maxRecords', env: 'RMBERT_BATCH_MAX_RECORDS', flag: 'batch-max-records', kind: 'int', default: '512', min: 1, max: 100_000, doc: 'records per micro-batch, at most' },
  { key: 'batch.maxBytes', env: 'RMBERT_BATCH_MAX_BYTES', flag: 'batch-max-bytes', kind: 'int', default: '262144', min: 1024, max: 256 * 1024 * 1024, doc: 'record bytes per micro-batch, at most' },
  { key: 'batch.maxCost', env: 'RMBERT_BATCH_MAX_COST', flag: 'batch-max-cost', kind: 'int', default: '20000', min: 1, max: 100_000_000, doc: 'cost of the documents of a micro-batch (characters + 16 per sentence), at most (a costlier document is alone in its micro-batch)' },
  { key: 'batch.maxWaitMs', env: 'RMBERT_BATCH_MAX_WAIT_MS', flag: 'batch-max-wait-ms', kind: 'int', default: '50', min: 0, max: 60_000, doc: 'longest wait for a micro-batch to fill' },
  { key: 'maxTextChars', env: 'RMBERT_MAX_TEXT_CHARS', flag: 'max-text-chars', kind: 'int', default: '100000', min: 1, max: 10_000_000, doc: 'longest document text accepted; longer ones are dead-lettered' },
  { key: 'model.dir', env: 'RMBERT_MODEL_DIR', flag: 'model-dir', kind: 'string', default: 'models/medical', packagePath: true, doc: 'model artifact directory, or a directory of versioned artifacts (the newest is served); the default is the one in the package' },
  { key: 'model.engine', env: 'RMBERT_ENGINE', flag: 'engine', kind: 'enum', values: ['auto', 'onnx', 'tfjs'], default: 'auto', doc: 'inference engine' },
  { key: 'model.pollIntervalMs', env: 'RMBERT_MODEL_POLL_MS', flag: 'model-poll-ms', kind: 'int', default: '10000', min: 0, max: 86_400_000, doc: 'how often the model directory is checked for a new artifact; 0 = never' },
  { key: 'metrics.port', env: 'RMBERT_METRICS_PORT', flag: 'metrics-port', kind: 'int', default: '9464', min: 0, max: 65535, doc: 'port of /metrics, /healthz and /readyz; 0 = any free port' },
  { key: 'metrics.host', env: 'RMBERT_METRICS_HOST', flag: 'metrics-host', kind: 'string', default: '0.0.0.0', doc: 'address the metrics server listens on' },
  { key: 'shutdownDeadlineMs', env: 'RMBERT_SHUTDOWN_DEADLINE_MS', flag: 'shutdown-deadline-ms', kind: 'int', default: '25000', min: 100, max: 3_600_000, doc: 'on SIGTERM/SIGINT, finish the in-flight micro-batch and exit within this time' },
  { key: 'embedded', env: 'RMBERT_EMBEDDED', flag: 'embedded', kind: 'bool', default: 'false', doc: 'use the in-memory graph from --kg-file instead of Neo4j' },
  { key: 'logLevel', env: 'RMBERT_LOG_LEVEL', flag: 'log-level', kind: 'enum', values: ['debug', 'info', 'warn', 'error'], default: 'info', doc: 'lowest level logged' },
  { key: 'instanceId', env: 'RMBERT_INSTANCE_ID', flag: 'instance-id', kind: 'string', default: '', doc: 'name of this stage process; empty = host name and pid' },
];

const TRUE = new Set(['1', 'true', 'yes', 'on']);
const FALSE = new Set(['0', 'false', 'no', 'off']);
const TOPIC_NAME = /^[a-zA-Z0-9._-]{1,249}$/;
const HOST_PORT = /^[^\s:,]+:\d{1,5}$/;

type Flat = Record<string, string | number | boolean | string[]>;

function parseValue(s: Setting, raw: string, origin: string, problems: string[]): string | number | boolean | string[] | undefined {
  const where = `${s.key} (${origin})`;
  switch (s.kind) {
    case 'string':
    case 'secret':
      return raw.trim();
    case 'list': {
      const items = raw.split(',').map((x) => x.trim()).filter((x) => x.length > 0);
      if (items.length === 0) problems.push(`${where}: must list at least one value`);
      return items;
    }
    case 'bool': {
      const v = raw.trim().toLowerCase();
      if (v === '' && origin.startsWith('--')) return true;
      if (TRUE.has(v)) return true;
      if (FALSE.has(v)) return false;
      problems.push(`${where}: "${raw}" is not a boolean (use true or false)`);
      return undefined;
    }
    case 'int': {
      const v = raw.trim();
      if (!/^-?\d+$/.test(v)) {
        problems.push(`${where}: "${raw}" is not an integer`);
        return undefined;
      }
      const n = Number(v);
      if ((s.min !== undefined && n < s.min) || (s.max !== undefined && n > s.max)) {
        problems.push(`${where}: ${n} is outside ${s.min ?? '-inf'}..${s.max ?? 'inf'}`);
        return undefined;
      }
      return n;
    }
    case 'enum': {
      const v = raw.trim().toLowerCase();
      if (!s.values!.includes(v)) {
        problems.push(`${where}: "${raw}" is not one of ${s.values!.filter((x) => x).join(', ')}`);
        return undefined;
      }
      return v;
    }
  }
}

export interface ConfigSources {
  /** Environment variables (process.env in production). */
  env?: Readonly<Record<string, string | undefined>>;
  /** Values from command-line flags, by flag name (without dashes); they win over the environment. */
  flags?: Readonly<Record<string, string | boolean | undefined>>;
  /** Fallback values by setting key, below the environment (e.g. a command's local-development defaults). */
  defaults?: Readonly<Record<string, string>>;
  /** Typed values by setting key, for tests and embedding; they win over flags and environment. */
  overrides?: Readonly<Record<string, string | number | boolean | readonly string[]>>;
  /** Used for the default instance id. */
  hostname?: string;
  pid?: number;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/** Each setting's value by key, from overrides, flags, environment, defaults in that order; problems collected. */
function resolveSettings(settings: readonly Setting[], sources: ConfigSources, problems: string[]): Flat {
  const flat: Flat = {};
  const env = sources.env ?? {};
  const flags = sources.flags ?? {};
  const overrides = sources.overrides ?? {};
  const known = new Set(settings.map((s) => s.key));
  for (const key of [...Object.keys(overrides), ...Object.keys(sources.defaults ?? {})]) if (!known.has(key)) problems.push(`${key}: unknown setting`);

  for (const s of settings) {
    let value: string | number | boolean | string[] | undefined;
    if (s.key in overrides) {
      const o = overrides[s.key];
      value = typeof o === 'string' ? parseValue(s, o, 'override', problems) : Array.isArray(o) ? [...o] : (o as number | boolean);
    } else if (flags[s.flag] !== undefined) {
      const f = flags[s.flag]!;
      value = parseValue(s, typeof f === 'boolean' ? String(f) : f, `--${s.flag}`, problems);
    } else if (env[s.env] !== undefined) {
      value = parseValue(s, env[s.env]!, s.env, problems);
    } else if (sources.defaults?.[s.key] !== undefined) {
      value = parseValue(s, sources.defaults[s.key], 'default', problems);
    } else if (s.default !== undefined) {
      value = parseValue(s, s.default, 'default', problems);
      if (s.packagePath && typeof value === 'string') value = path.resolve(PACKAGE_ROOT, value);
    }
    if (value !== undefined) flat[s.key] = value;
  }
  return flat;
}

/** Validates every setting and cross-setting rule; throws one ConfigError listing every problem. */
export function buildConfig(sources: ConfigSources = {}): StageConfig {
  const problems: string[] = [];
  const flat = resolveSettings(SETTINGS, sources, problems);

  const str = (k: string) => (flat[k] as string | undefined) ?? '';
  const int = (k: string) => (flat[k] as number | undefined) ?? 0;
  const bool = (k: string) => (flat[k] as boolean | undefined) ?? false;
  const opt = (k: string) => (str(k) === '' ? null : str(k));

  const brokers = (flat['kafka.brokers'] as string[] | undefined) ?? [];
  for (const b of brokers) if (!HOST_PORT.test(b)) problems.push(`kafka.brokers: "${b}" is not host:port`);

  const topics: TopicsConfig = {
    input: str('topics.input'),
    output: str('topics.output'),
    deadLetter: str('topics.deadLetter'),
    feedback: str('topics.feedback'),
    modelUpdates: str('topics.modelUpdates'),
    heavy: str('topics.heavy') || `${str('topics.input')}.heavy`,
  };
  for (const [k, v] of Object.entries(topics)) {
    if (!TOPIC_NAME.test(v)) problems.push(`topics.${k}: "${v}" is not a valid Kafka topic name`);
  }
  const seen = new Map<string, string>();
  for (const [k, v] of Object.entries(topics)) {
    if (seen.has(v)) problems.push(`topics.${k}: "${v}" is also topics.${seen.get(v)}; every topic must differ`);
    else seen.set(v, k);
  }
  for (const k of ['groupId', 'transactionalIdPrefix', 'kafka.clientId', 'knowledge.graphName']) {
    if (str(k) === '') problems.push(`${k}: must not be empty`);
  }

  const mechanism = str('kafka.saslMechanism');
  let sasl: KafkaConfig['sasl'] = null;
  if (mechanism !== '') {
    if (str('kafka.saslUsername') === '') problems.push('kafka.saslUsername: required when kafka.saslMechanism is set (RMBERT_KAFKA_SASL_USERNAME)');
    if (str('kafka.saslPassword') === '') problems.push('kafka.saslPassword: required when kafka.saslMechanism is set (RMBERT_KAFKA_SASL_PASSWORD)');
    sasl = { mechanism: mechanism as SaslMechanism, username: str('kafka.saslUsername'), password: str('kafka.saslPassword') };
  }
  for (const k of ['kafka.sslCaFile', 'kafka.sslCertFile', 'kafka.sslKeyFile']) {
    const file = opt(k);
    if (file === null) continue;
    if (!bool('kafka.ssl')) problems.push(`${k}: set, but kafka.ssl is false (RMBERT_KAFKA_SSL=true)`);
    if (!existsSync(file)) problems.push(`${k}: file ${file} does not exist`);
  }
  if ((opt('kafka.sslCertFile') === null) !== (opt('kafka.sslKeyFile') === null)) {
    problems.push('kafka.sslCertFile and kafka.sslKeyFile: give both or neither');
  }
  if (int('kafka.initialRetryMs') > int('kafka.maxRetryMs')) problems.push('kafka.initialRetryMs: must not exceed kafka.maxRetryMs');
  if (int('knowledge.retryInitialMs') > int('knowledge.retryMaxMs')) problems.push('knowledge.retryInitialMs: must not exceed knowledge.retryMaxMs');

  const embedded = bool('embedded');
  const kgEnabled = bool('knowledge.enabled');
  if (!kgEnabled) {
    // No graph: neither Neo4j nor a graph file is needed.
  } else if (!embedded) {
    problems.push(...neo4jProblems(str('neo4j.uri'), str('neo4j.password'), 'unless embedded mode is on or the graph is off '));
  } else if (!existsSync(str('knowledge.kgFile'))) {
    problems.push(`knowledge.kgFile: ${str('knowledge.kgFile')} does not exist (embedded mode reads the graph from it)`);
  }
  const lexiconFile = opt('assertion.lexiconFile');
  if (lexiconFile !== null) {
    if (!bool('assertion.enabled')) problems.push('assertion.lexiconFile: set, but assertion.enabled is false (RMBERT_ASSERTION_ENABLED)');
    if (!existsSync(lexiconFile)) problems.push(`assertion.lexiconFile: file ${lexiconFile} does not exist (RMBERT_ASSERTION_LEXICON)`);
  }
  if (str('model.dir') === '') problems.push('model.dir: must not be empty (RMBERT_MODEL_DIR)');
  if (int('kafka.sessionTimeoutMs') <= int('batch.maxWaitMs')) problems.push('kafka.sessionTimeoutMs: must be longer than batch.maxWaitMs');
  if (int('kafka.heartbeatIntervalMs') * 3 > int('kafka.sessionTimeoutMs')) problems.push('kafka.heartbeatIntervalMs: must be at most a third of kafka.sessionTimeoutMs');

  if (problems.length > 0) throw new ConfigError(problems);

  const instanceId = str('instanceId') || `${sources.hostname ?? 'stage'}-${sources.pid ?? 0}`;
  return deepFreeze<StageConfig>({
    kafka: {
      brokers,
      clientId: str('kafka.clientId'),
      ssl: bool('kafka.ssl'),
      sslCaFile: opt('kafka.sslCaFile'),
      sslCertFile: opt('kafka.sslCertFile'),
      sslKeyFile: opt('kafka.sslKeyFile'),
      sslRejectUnauthorized: bool('kafka.sslRejectUnauthorized'),
      sasl,
      connectionTimeoutMs: int('kafka.connectionTimeoutMs'),
      requestTimeoutMs: int('kafka.requestTimeoutMs'),
      retries: int('kafka.retries'),
      initialRetryMs: int('kafka.initialRetryMs'),
      maxRetryMs: int('kafka.maxRetryMs'),
      sessionTimeoutMs: int('kafka.sessionTimeoutMs'),
      heartbeatIntervalMs: int('kafka.heartbeatIntervalMs'),
      rebalanceTimeoutMs: int('kafka.rebalanceTimeoutMs'),
      transactionTimeoutMs: int('kafka.transactionTimeoutMs'),
    },
    topics,
    groupId: str('groupId'),
    transactionalIdPrefix: str('transactionalIdPrefix'),
    createTopics: bool('createTopics'),
    topicPartitions: int('topicPartitions'),
    topicReplicationFactor: int('topicReplicationFactor'),
    neo4j: { uri: str('neo4j.uri'), user: str('neo4j.user'), password: str('neo4j.password'), database: opt('neo4j.database') },
    knowledge: {
      enabled: kgEnabled,
      cacheSize: int('knowledge.cacheSize'),
      retryInitialMs: int('knowledge.retryInitialMs'),
      retryMaxMs: int('knowledge.retryMaxMs'),
      kgFile: str('knowledge.kgFile'),
      graphName: str('knowledge.graphName'),
      versionPollMs: int('knowledge.versionPollMs'),
    },
    assertion: { enabled: bool('assertion.enabled'), lexiconFile },
    batch: { maxRecords: int('batch.maxRecords'), maxBytes: int('batch.maxBytes'), maxCost: int('batch.maxCost'), maxWaitMs: int('batch.maxWaitMs') },
    heavy: { minCost: int('heavy.minCost') },
    maxTextChars: int('maxTextChars'),
    model: { dir: str('model.dir'), engine: str('model.engine') as EngineChoice, pollIntervalMs: int('model.pollIntervalMs') },
    metrics: { port: int('metrics.port'), host: str('metrics.host') },
    shutdownDeadlineMs: int('shutdownDeadlineMs'),
    embedded,
    logLevel: str('logLevel') as LogLevel,
    instanceId,
  });
}

function neo4jProblems(uri: string, password: string, unless = ''): string[] {
  const problems: string[] = [];
  if (!/^(bolt|neo4j)(\+s|\+ssc)?:\/\/[^\s/]+/.test(uri)) problems.push(`neo4j.uri: "${uri}" is not a bolt:// or neo4j:// URI (RMBERT_NEO4J_URI)`);
  if (password === '') problems.push(`neo4j.password: required ${unless}(RMBERT_NEO4J_PASSWORD)`);
  return problems;
}

/** Where a graph lives: the Neo4j connection and the graph's name inside it. */
export interface GraphStoreConfig {
  neo4j: StageConfig['neo4j'];
  graphName: string;
}

const GRAPH_STORE_KEYS = new Set(['neo4j.uri', 'neo4j.user', 'neo4j.password', 'neo4j.database', 'knowledge.graphName']);

/**
 * The stage's Neo4j settings alone (same variables, flags and defaults), for the commands that work on
 * the graph store only (`rmbert kg`): the rest of the stage's settings neither apply nor can fail them.
 */
export function buildGraphStoreConfig(sources: ConfigSources = {}): GraphStoreConfig {
  const problems: string[] = [];
  const flat = resolveSettings(SETTINGS.filter((s) => GRAPH_STORE_KEYS.has(s.key)), sources, problems);
  const str = (k: string) => (flat[k] as string | undefined) ?? '';
  problems.push(...neo4jProblems(str('neo4j.uri'), str('neo4j.password')));
  if (str('knowledge.graphName') === '') problems.push('knowledge.graphName: must not be empty');
  if (problems.length > 0) throw new ConfigError(problems);
  return deepFreeze<GraphStoreConfig>({
    neo4j: { uri: str('neo4j.uri'), user: str('neo4j.user'), password: str('neo4j.password'), database: str('neo4j.database') || null },
    graphName: str('knowledge.graphName'),
  });
}

/** The configuration with secrets masked, for a start-up log line. */
export function describeConfig(config: StageConfig): Record<string, unknown> {
  const copy = JSON.parse(JSON.stringify(config)) as StageConfig & { kafka: { sasl: { password: string } | null } };
  if (copy.neo4j.password) copy.neo4j.password = '***';
  if (copy.kafka.sasl) copy.kafka.sasl.password = '***';
  return copy as unknown as Record<string, unknown>;
}
