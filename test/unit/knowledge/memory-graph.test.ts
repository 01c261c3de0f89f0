import { InMemoryKnowledgeGraph } from '../../../src/knowledge/index.ts';
import { knowledgeGraphContract } from './graph-contract.ts';

knowledgeGraphContract('in-memory', async (graphName) => new InMemoryKnowledgeGraph(graphName));
