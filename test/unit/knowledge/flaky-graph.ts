import type { Triple } from '../../../src/domain/index.ts';
import { KnowledgeUnavailableError } from '../../../src/errors/index.ts';
import { InMemoryKnowledgeGraph } from '../../../src/knowledge/index.ts';
import type { KnowledgeGraph } from '../../../src/knowledge/index.ts';

/** An in-memory graph that counts round trips and can be switched off like an unreachable server. */
export class FlakyGraph extends InMemoryKnowledgeGraph {
  down = false;
  calls: string[][] = [];
  override async triplesOf(names: readonly string[], maxPerName: number): Promise<Map<string, Triple[]>> {
    this.calls.push([...names]);
    if (this.down) throw new KnowledgeUnavailableError('graph down (test)');
    return super.triplesOf(names, maxPerName);
  }
  override async stamp(): ReturnType<KnowledgeGraph['stamp']> {
    if (this.down) throw new KnowledgeUnavailableError('graph down (test)');
    return super.stamp();
  }
}

