/**
 * `rmbert kg`: load `.spo` knowledge graphs into Neo4j, show what a graph holds, merge graph files into one.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { SingleBar } from 'cli-progress';
import { loadGraphStoreConfig, SETTINGS, type GraphStoreConfig } from '../../config/index.ts';
import { ConfigError, KnowledgeUnavailableError, SchemaError } from '../../errors/index.ts';
import { loadSpoFile, mergeSpoFiles, Neo4jKnowledgeGraph } from '../../knowledge/index.ts';
import type { LoadReport } from '../../knowledge/index.ts';

export const summary = 'load .spo knowledge graphs into Neo4j (kg load FILE.spo...), show a graph (kg info), merge graph files (kg merge)';

const DEFAULT_BATCH_SIZE = 1000;
/** Malformed lines printed one by one; the rest are counted. */
const MAX_MALFORMED_SHOWN = 50;

const NEO4J_METAVARS: Record<string, string> = { 'neo4j.uri': 'URI', 'neo4j.user': 'USER', 'neo4j.password': 'PASS', 'neo4j.database': 'NAME' };

const HELP = `usage: rmbert kg load FILE.spo [FILE.spo ...] [options]
       rmbert kg info [options]
       rmbert kg merge FILE.spo [FILE.spo ...] --out OUT.spo

kg load: bulk, idempotent load of .spo files (UTF-8, one "subject<TAB>relation<TAB>object" per line) into
Neo4j as (:Concept {graph, name})-[:REL {type}]->(:Concept {graph, name}), in batches of UNWIND/MERGE,
with a uniqueness constraint on (Concept.graph, Concept.name). Several files are loaded one after the
other into the same graph, which then holds their union. Loading the same file again changes
nothing. Malformed lines (not 3 non-empty tab-separated fields, invalid UTF-8, control characters,
unpaired surrogates, leading/trailing whitespace in a field) are reported on stderr as FILE:LINE: reason
and skipped. At the end it stores the KG version stamp (sha256 of the graph's normalised triples) with
the graph and prints the counts. A progress bar goes to stderr.

kg info: prints the graph's version stamp and its concept and triple counts.

kg merge: writes the union of the files as one normalised .spo file (distinct triples sorted by UTF-16
code units; malformed lines reported and left out), for embedded mode (--kg-file), rmbert annotate and
rmbert eval, which read one file. Its sha256 is its KG version stamp, the stamp Neo4j gets from
\`kg load\` of the same files. Needs no Neo4j.

options (the Neo4j ones are \`rmbert serve\`'s settings: flag, else environment variable, else default):
${SETTINGS.filter((s) => s.key in NEO4J_METAVARS)
  .map((s) => `  --${s.flag} ${NEO4J_METAVARS[s.key]}\n      ${s.env}: ${s.doc}${s.default ? ` (default ${s.default})` : ''}`)
  .join('\n')}
  --graph NAME
      RMBERT_KG_GRAPH: graph name inside the database (default "${SETTINGS.find((s) => s.key === 'knowledge.graphName')!.default}",
      the one the stage reads)
  --batch-size N           triples per UNWIND/MERGE transaction (kg load; default ${DEFAULT_BATCH_SIZE})
  --replace                remove the graph's triples first, so it holds exactly the files (kg load)
  --out FILE               the merged file to write (kg merge)
  --no-progress            no progress bar (kg load)
  -h, --help               this text

exit status: 0 done (malformed lines, if any, were skipped and reported), 1 failed (Neo4j unreachable,
a file without a single valid triple: nothing is loaded and the graph keeps its version), 2 bad usage or
configuration (Neo4j rejected the user name or password).
`;

function usageError(message: string): number {
  console.error(`rmbert kg: ${message}\nRun \`rmbert kg --help\` for the options.`);
  return 2;
}

function describeReport(report: LoadReport, graphName: string): string {
  const lines = [
    `loaded ${report.file}: ${report.lines} lines, ${report.validTriples} valid triples ` +
      `(${report.distinctTriples} distinct, ${report.duplicates} duplicate), ${report.malformedCount} malformed skipped, ` +
      `${report.batches} batches in ${(report.elapsedMs / 1000).toFixed(1)} s`,
    `graph "${graphName}" now holds ${report.stamp.triples} triples between ${report.stamp.concepts} concepts`,
    `KG version ${report.stamp.version}${report.stamp.version === report.fileVersion ? '' : ` (the file alone: ${report.fileVersion})`}`,
  ];
  return lines.join('\n');
}

function reportMalformed(file: string, shown: readonly { line: number; reason: string }[], count: number): void {
  for (const m of shown) console.error(`${file}:${m.line}: ${m.reason}`);
  if (count > shown.length) console.error(`${file}: ${count - shown.length} more malformed lines not shown`);
}

async function merge(files: readonly string[], out: string | undefined): Promise<number> {
  if (files.length === 0) return usageError('kg merge takes one or more FILE.spo');
  if (!out) return usageError('kg merge needs --out OUT.spo');
  if (files.some((f) => path.resolve(f) === path.resolve(out))) return usageError(`--out ${out} is also an input: write the union elsewhere`);
  let merged;
  try {
    merged = await mergeSpoFiles(files, MAX_MALFORMED_SHOWN);
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    if (e.code === 'ENOENT' || e.code === 'EISDIR' || e.code === 'EACCES') {
      console.error(`rmbert kg: cannot read ${e.path ?? 'a file'}: ${e.code}`);
      return 1;
    }
    throw error;
  }
  for (const f of merged.files) {
    reportMalformed(f.file, f.malformed, f.malformedCount);
    console.error(`${f.file}: ${f.lines} lines, ${f.validTriples} valid triples, ${f.malformedCount} malformed skipped`);
  }
  if (merged.distinct === 0) {
    console.error('rmbert kg: the files hold no valid triple; nothing was written');
    return 1;
  }
  await writeFile(out, merged.text);
  console.log(`wrote ${out}: ${merged.distinct} distinct triples (${merged.duplicates} duplicates removed)\nKG version ${merged.version}`);
  return 0;
}

export async function run(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        'neo4j-uri': { type: 'string' },
        'neo4j-user': { type: 'string' },
        'neo4j-password': { type: 'string' },
        'neo4j-database': { type: 'string' },
        graph: { type: 'string' },
        'batch-size': { type: 'string' },
        replace: { type: 'boolean', default: false },
        out: { type: 'string' },
        'no-progress': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (error) {
    return usageError((error as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const [action, ...rest] = positionals;
  if (action !== 'load' && action !== 'info' && action !== 'merge') {
    return usageError(action ? `unknown action "${action}" (expected load, info or merge)` : 'missing action (load, info or merge)');
  }
  if (action === 'load' && rest.length === 0) return usageError('kg load takes one or more FILE.spo');
  if (action === 'info' && rest.length !== 0) return usageError('kg info takes no file');
  if (action !== 'merge' && values.out !== undefined) return usageError('--out belongs to kg merge');
  if (action === 'merge') return merge(rest, values.out);
  let batchSize = DEFAULT_BATCH_SIZE;
  if (values['batch-size'] !== undefined) {
    batchSize = Number(values['batch-size']);
    if (!Number.isInteger(batchSize) || batchSize < 1) return usageError(`--batch-size must be a positive integer (got "${values['batch-size']}")`);
  }
  let store: GraphStoreConfig;
  let graph: Neo4jKnowledgeGraph;
  try {
    store = loadGraphStoreConfig({
      'neo4j-uri': values['neo4j-uri'],
      'neo4j-user': values['neo4j-user'],
      'neo4j-password': values['neo4j-password'],
      'neo4j-database': values['neo4j-database'],
      'kg-graph': values.graph,
    });
    graph = new Neo4jKnowledgeGraph({
      uri: store.neo4j.uri,
      user: store.neo4j.user,
      password: store.neo4j.password,
      graphName: store.graphName,
      ...(store.neo4j.database ? { database: store.neo4j.database } : {}),
    });
  } catch (error) {
    if (error instanceof ConfigError) return usageError(error.problems.join('; '));
    throw error;
  }
  const uri = store.neo4j.uri;

  const bar = values['no-progress'] || action !== 'load' ? null : new SingleBar({
    stream: process.stderr,
    format: 'kg load [{bar}] {percentage}% | {value}/{total} bytes | {triples} triples | {malformed} malformed | {duration}s',
    hideCursor: true,
  });
  try {
    if (action === 'info') {
      const [stamp, stats, subjects] = [await graph.stamp(), await graph.stats(), await graph.subjects()];
      console.log(`graph "${graph.graphName}" at ${uri}: ${stats.triples} triples between ${stats.concepts} concepts, ${subjects.length} of them subjects (the names the stage matches in text)`);
      console.log(stamp ? `KG version ${stamp.version} (loaded ${stamp.loadedAt} from ${stamp.source})` : 'no version stamp (never loaded with rmbert kg load, or a load is under way)');
      return 0;
    }
    for (const [index, file] of rest.entries()) {
      let started = false;
      const report = await loadSpoFile(file, graph, {
        batchSize,
        // Only the first file starts from an empty graph: the others add to it.
        replace: values.replace && index === 0,
        // Reported after the bar has finished, so the lines and the bar do not garble each other.
        keepMalformed: MAX_MALFORMED_SHOWN,
        onProgress: (p) => {
          if (!bar) return;
          if (!started) {
            bar.start(p.totalBytes, p.bytesRead, { triples: p.triplesSent, malformed: p.malformed });
            started = true;
          } else bar.update(p.bytesRead, { triples: p.triplesSent, malformed: p.malformed });
        },
      });
      bar?.stop();
      reportMalformed(file, report.malformed, report.malformedCount);
      console.log(describeReport(report, graph.graphName));
    }
    return 0;
  } catch (error) {
    bar?.stop();
    if (error instanceof KnowledgeUnavailableError) {
      console.error(
        `rmbert kg: cannot reach Neo4j at ${uri}: ${(error.cause as Error | undefined)?.message ?? error.message}\n` +
          'Start the local server (bash scripts/infra.sh up) or set RMBERT_NEO4J_URI (--neo4j-uri).',
      );
      return 1;
    }
    // Rejected credentials: the configuration is wrong, as in \`rmbert serve\` (exit 2 there too).
    if (error instanceof ConfigError) {
      console.error(`rmbert kg: ${error.problems.join('; ')} (RMBERT_NEO4J_USER, RMBERT_NEO4J_PASSWORD or --neo4j-user, --neo4j-password)`);
      return 2;
    }
    if (error instanceof SchemaError) {
      console.error(`rmbert kg: ${error.message}`);
      return 1;
    }
    throw error;
  } finally {
    await graph.close();
  }
}
