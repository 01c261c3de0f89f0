// Types of offsets.js (plain JavaScript so that the browser loads it as it is).
export interface Range {
  start: number;
  end: number;
}
export interface Cell extends Range {
  ch: string;
}
export interface SpanLike extends Range {
  text?: string;
  type: string;
  [k: string]: unknown;
}
export function splitsPair(text: string, i: number): boolean;
export function prevBoundary(text: string, i: number): number;
export function nextBoundary(text: string, i: number): number;
export function cells(text: string): Cell[];
export function normaliseRange(text: string, a: number, b: number): Range | null;
export function overlaps(a: Range, b: Range): boolean;
export function addSpan<T extends SpanLike>(text: string, entities: readonly T[], start: number, end: number, type: string): { entities: (T | SpanLike)[]; index: number } | null;
export function nudge<T extends SpanLike>(text: string, entities: readonly T[], index: number, edge: 'start' | 'end', dir: -1 | 1): T[] | null;
export function entityProblems(text: string, entities: unknown, types: readonly string[], maxEntities: number): string[];
export const ASSERTION_VALUES: {
  polarity: readonly ['present', 'absent'];
  certainty: readonly ['certain', 'possible'];
  temporality: readonly ['current', 'historical'];
  experiencer: readonly ['patient', 'other'];
};
