/**
 * `rmbert` entry point. Each subcommand lives in ./commands/<name>.ts and exports
 * `summary` (one line for --help) and `run(argv): Promise<number>` (the exit code).
 */
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { RmBertError } from '../errors/index.ts';

interface Command {
  summary: string;
  run(argv: string[]): Promise<number>;
}

const commandsDir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'commands');

function commandNames(): string[] {
  return readdirSync(commandsDir)
    .filter((f) => f.endsWith('.ts'))
    .map((f) => f.slice(0, -3))
    .sort();
}

async function loadCommand(name: string): Promise<Command> {
  return (await import(path.join(commandsDir, `${name}.ts`))) as Command;
}

async function printHelp(): Promise<void> {
  const lines = ['usage: rmbert <command> [options]', '', 'commands:'];
  for (const name of commandNames()) {
    const cmd = await loadCommand(name);
    lines.push(`  ${name.padEnd(10)} ${cmd.summary}`);
  }
  lines.push('', 'Run `rmbert <command> --help` for the options of one command.');
  console.log(lines.join('\n'));
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    await printHelp();
    return name ? 0 : 2;
  }
  if (!commandNames().includes(name)) {
    console.error(`rmbert: unknown command "${name}". Run \`rmbert --help\` for the list.`);
    return 2;
  }
  return (await loadCommand(name)).run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    // Our own typed errors carry a message meant for the user; anything else is a bug, so show where.
    const known = error instanceof RmBertError;
    console.error(`rmbert: ${known ? error.message : error instanceof Error ? error.stack : String(error)}`);
    process.exitCode = 1;
  },
);
