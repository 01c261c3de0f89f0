/**
 * Neo4j adapter of the knowledge-graph port (neo4j-driver; every query parameterised, no value is
 * ever spliced into Cypher text).
 *
 * Model: (:Concept {graph, name})-[:REL {type}]->(:Concept {graph, name}), plus one
 * (:KgMeta {graph, version, triples, concepts, loadedAt, source}) per graph for the version stamp.
 *
 * Why a `graph` property and not per-graph labels: labels cannot be query parameters in Cypher 5,
 * so per-graph labels would mean building query text from names. With the property, one
 * uniqueness constraint on (Concept.graph, Concept.name) gives what a constraint on Concept.name
 * gives for a single graph (one node per name, an index for lookups) while several graphs
 * (the service's, staging ones, every test's) share the one database Neo4j Community offers.
 */
import neo4j from 'neo4j-driver';
import type { Driver, Record as Neo4jRecord } from 'neo4j-driver';
import type { Triple } from '../domain/index.ts';
import { ConfigError, KnowledgeUnavailableError, RmBertError } from '../errors/index.ts';
import { compareCodeUnits, compareTriples, DEFAULT_GRAPH_NAME } from './graph.ts';
import type { GraphStats, KgStamp, KnowledgeGraph } from './graph.ts';

export interface Neo4jGraphOptions {
  uri: string;
  user: string;
  password: string;
  /** Graph name inside the database (the `graph` property of every node). */
  graphName?: string;
  /** Database name; Neo4j's default database when omitted. */
  database?: string;
  /** How long to wait for a connection before reporting the graph unavailable. */
  connectionTimeoutMs?: number;
  /** How long managed write transactions are retried on transient errors. */
  maxRetryTimeMs?: number;
}

/** Local development defaults (the server started by scripts/infra.sh). */
export const NEO4J_LOCAL_DEFAULTS = Object.freeze({
  uri: 'bolt://127.0.0.1:17687',
  user: 'neo4j',
  password: 'rmbert-local',
});

const CLEAR_BATCH = 10_000;

function errorCode(error: unknown): string {
  return typeof error === 'object' && error !== null && 'code' in error ? String((error as { code: unknown }).code) : '';
}

export class Neo4jKnowledgeGraph implements KnowledgeGraph {
  readonly graphName: string;
  private readonly driver: Driver;
  private readonly database: string | undefined;
  private readonly uri: string;
  private readonly user: string;

  constructor(options: Neo4jGraphOptions) {
    this.graphName = options.graphName ?? DEFAULT_GRAPH_NAME;
    this.database = options.database;
    this.uri = options.uri;
    this.user = options.user;
    try {
      this.driver = neo4j.driver(options.uri, neo4j.auth.basic(options.user, options.password), {
        disableLosslessIntegers: true,
        connectionTimeout: options.connectionTimeoutMs ?? 5000,
        connectionAcquisitionTimeout: options.connectionTimeoutMs ?? 5000,
        maxTransactionRetryTime: options.maxRetryTimeMs ?? 5000,
        maxConnectionPoolSize: 8,
        userAgent: 'rmbert-knowledge',
      });
    } catch (error) {
      throw new ConfigError([`invalid Neo4j URI "${options.uri}" (expected e.g. bolt://127.0.0.1:17687): ${(error as Error).message}`]);
    }
  }

  /** Turns a driver error into one of ours: unreachable/transient -> retriable, credentials -> config. */
  private translate(error: unknown, what: string): Error {
    if (error instanceof RmBertError) return error;
    const code = errorCode(error);
    const message = error instanceof Error ? error.message : String(error);
    if (code.startsWith('Neo.ClientError.Security.')) {
      return new ConfigError([
        `Neo4j at ${this.uri} rejected user "${this.user}" (${code}); check the user name and password`,
      ]);
    }
    if (
      code === 'ServiceUnavailable' ||
      code === 'SessionExpired' ||
      code.startsWith('Neo.TransientError.') ||
      code === 'Neo.ClientError.Database.DatabaseNotFound' ||
      /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|connection/i.test(message)
    ) {
      return new KnowledgeUnavailableError(`knowledge graph unavailable (Neo4j at ${this.uri}) while ${what}: ${message}`, error);
    }
    return new RmBertError(`Neo4j failed while ${what}: ${message}`, { cause: error });
  }

  private async write(query: string, params: Record<string, unknown>, what: string): Promise<Neo4jRecord[]> {
    try {
      const result = await this.driver.executeQuery(query, params, { database: this.database, routing: neo4j.routing.WRITE });
      return result.records;
    } catch (error) {
      throw this.translate(error, what);
    }
  }

  /** Reads run as one auto-commit query: one round trip, no driver-side retry (the caller decides). */
  private async read(query: string, params: Record<string, unknown>, what: string): Promise<Neo4jRecord[]> {
    const session = this.driver.session({ database: this.database, defaultAccessMode: neo4j.session.READ });
    try {
      const result = await session.run(query, params);
      return result.records;
    } catch (error) {
      throw this.translate(error, what);
    } finally {
      await session.close().catch(() => undefined);
    }
  }

  async init(): Promise<void> {
    // Fails fast (no transaction retries) when the server is down or the credentials are wrong.
    try {
      await this.driver.verifyConnectivity({ database: this.database });
    } catch (error) {
      throw this.translate(error, 'connecting');
    }
    const constraints = [
      'CREATE CONSTRAINT rmbert_concept_graph_name IF NOT EXISTS FOR (c:Concept) REQUIRE (c.graph, c.name) IS UNIQUE',
      'CREATE CONSTRAINT rmbert_kgmeta_graph IF NOT EXISTS FOR (m:KgMeta) REQUIRE m.graph IS UNIQUE',
    ];
    for (const query of constraints) {
      try {
        await this.driver.executeQuery(query, {}, { database: this.database, routing: neo4j.routing.WRITE });
      } catch (error) {
        // Two processes creating the same constraint at once: the loser sees it already exists.
        if (errorCode(error).includes('EquivalentSchemaRuleAlreadyExists')) continue;
        throw this.translate(error, 'creating constraints');
      }
    }
  }

  async mergeTriples(triples: readonly Triple[]): Promise<void> {
    if (triples.length === 0) return;
    const rows = triples.map((t) => [t.subject, t.relation, t.object]);
    await this.write(
      `UNWIND $rows AS row
       MERGE (s:Concept {graph: $graph, name: row[0]})
       MERGE (o:Concept {graph: $graph, name: row[2]})
       MERGE (s)-[:REL {type: row[1]}]->(o)`,
      { rows, graph: this.graphName },
      'merging triples',
    );
  }

  async clear(): Promise<void> {
    for (;;) {
      const records = await this.write(
        `MATCH (c:Concept {graph: $graph}) WITH c LIMIT $limit DETACH DELETE c RETURN count(*) AS deleted`,
        { graph: this.graphName, limit: neo4j.int(CLEAR_BATCH) },
        'clearing the graph',
      );
      if ((records[0]?.get('deleted') as number) === 0) break;
    }
    await this.setStamp(null);
  }

  async stats(): Promise<GraphStats> {
    const records = await this.read(
      `CALL { MATCH (c:Concept {graph: $graph}) RETURN count(c) AS concepts }
       CALL { MATCH (:Concept {graph: $graph})-[r:REL]->() RETURN count(r) AS triples }
       RETURN concepts, triples`,
      { graph: this.graphName },
      'counting the graph',
    );
    return { concepts: records[0].get('concepts') as number, triples: records[0].get('triples') as number };
  }

  async subjects(): Promise<string[]> {
    const records = await this.read(
      `MATCH (s:Concept {graph: $graph}) WHERE EXISTS { (s)-[:REL]->() } RETURN s.name AS name`,
      { graph: this.graphName },
      'listing concept names',
    );
    return records.map((r) => r.get('name') as string).sort(compareCodeUnits);
  }

  async triplesOf(names: readonly string[], maxPerName: number): Promise<Map<string, Triple[]>> {
    const out = new Map<string, Triple[]>();
    const unique = [...new Set(names)];
    for (const name of unique) out.set(name, []);
    const cap = Math.max(0, Math.floor(maxPerName));
    if (unique.length === 0 || cap === 0) return out;
    // Every triple of each name comes back and is sorted and capped here: Neo4j's ORDER BY on
    // stored strings is not UTF-16 code-unit order (astral characters sort after U+E000-U+FFFF), and
    // the order must be the same in every adapter. A name's triples are few (Medical: at most 2).
    const records = await this.read(
      `UNWIND $names AS name
       MATCH (s:Concept {graph: $graph, name: name})-[r:REL]->(o:Concept)
       RETURN name, collect([r.type, o.name]) AS pairs`,
      { names: unique, graph: this.graphName },
      'looking up triples',
    );
    for (const record of records) {
      const subject = record.get('name') as string;
      const pairs = record.get('pairs') as [string, string][];
      const triples = pairs.map(([relation, object]) => ({ subject, relation, object })).sort(compareTriples);
      out.set(subject, triples.slice(0, cap));
    }
    return out;
  }

  async allTriples(): Promise<Triple[]> {
    const records = await this.read(
      `MATCH (s:Concept {graph: $graph})-[r:REL]->(o:Concept) RETURN s.name AS s, r.type AS r, o.name AS o`,
      { graph: this.graphName },
      'reading all triples',
    );
    return records
      .map((rec) => ({ subject: rec.get('s') as string, relation: rec.get('r') as string, object: rec.get('o') as string }))
      .sort(compareTriples);
  }

  async stamp(): Promise<KgStamp | null> {
    const records = await this.read(
      `MATCH (m:KgMeta {graph: $graph})
       RETURN m.version AS version, m.triples AS triples, m.concepts AS concepts, m.loadedAt AS loadedAt, m.source AS source`,
      { graph: this.graphName },
      'reading the version stamp',
    );
    if (records.length === 0) return null;
    const r = records[0];
    return {
      version: r.get('version') as string,
      triples: r.get('triples') as number,
      concepts: r.get('concepts') as number,
      loadedAt: r.get('loadedAt') as string,
      source: r.get('source') as string,
    };
  }

  async setStamp(stamp: KgStamp | null): Promise<void> {
    if (stamp === null) {
      await this.write(`MATCH (m:KgMeta {graph: $graph}) DELETE m`, { graph: this.graphName }, 'removing the version stamp');
      return;
    }
    await this.write(
      `MERGE (m:KgMeta {graph: $graph})
       SET m.version = $version, m.triples = $triples, m.concepts = $concepts, m.loadedAt = $loadedAt, m.source = $source`,
      {
        graph: this.graphName,
        version: stamp.version,
        triples: neo4j.int(stamp.triples),
        concepts: neo4j.int(stamp.concepts),
        loadedAt: stamp.loadedAt,
        source: stamp.source,
      },
      'storing the version stamp',
    );
  }

  async close(): Promise<void> {
    await this.driver.close();
  }
}
