import { readFileSync } from 'node:fs';

export const summary = 'print the rmbert version';

export async function run(_argv: string[]): Promise<number> {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  console.log(pkg.version);
  return 0;
}
