/**
 * The promotion gate and the naming of promoted versions.
 *
 * Gate: a challenger replaces the champion only if its strict micro F1 on the frozen gold set is
 * within a tolerance of the champion's, on the persisted feedback holdout at least the champion's
 * (plus a margin), no entity type of the gold set fell by more than a tolerance, no frequent gold
 * surface lost much of what the champion found, and the round did not move the weights too far.
 * The per-type and per-surface checks catch a round that relabels something the gold set holds
 * without moving the overall figure. An empty holdout gives no evidence either way (the decision
 * says so).
 */
import type { Prf } from './metrics.ts';

export interface SetScores {
  champion: Prf;
  challenger: Prf;
  /** Sentences scored. */
  sentences: number;
}

export interface GateInput {
  gold: SetScores;
  holdout: SetScores;
  /** Gold-set F1 per entity type (absent: the per-type check is not run). */
  goldTypes?: Record<string, { champion: Prf; challenger: Prf }>;
  /** Gold mentions per surface and how many each model found (absent: the per-surface check is not run). */
  goldSurfaces?: readonly { surface: string; mentions: number; champion: number; challenger: number }[];
  /** ||theta - theta*||_1 / ||theta*||_1 (absent: not checked). */
  relativeDistance?: number;
}

/**
 * What the gate asks of a challenger. Every check is independent of the others and named, so a
 * refusal says which one failed and by how much. Tolerances are fractions (0.005 = half a point of F1).
 */
export interface GateSettings {
  /** Gold F1 may fall at most this much below the champion's (negative: a gain is required). */
  goldTolerance: number;
  /** Holdout F1 must reach the champion's + this. */
  holdoutMargin: number;
  /** Per-type gold F1 may fall at most this much, for types with at least typeMinEntities gold entities. */
  typeTolerance: number;
  typeMinEntities: number;
  /** A gold surface with at least surfaceMinMentions mentions may lose at most this share of the mentions the champion found. */
  surfaceMaxLoss: number;
  surfaceMinMentions: number;
  /** Largest relative move ||theta - theta*||_1 / ||theta*||_1 of one round; 0 = no cap. */
  maxRelativeDistance: number;
}

/** `margin` alone (the gate before per-type, per-surface and distance checks): the same margin on gold and holdout. */
export function marginOnly(margin: number): GateSettings {
  return { goldTolerance: -margin, holdoutMargin: margin, typeTolerance: Infinity, typeMinEntities: Infinity, surfaceMaxLoss: Infinity, surfaceMinMentions: Infinity, maxRelativeDistance: 0 };
}

export interface GateDecision {
  promote: boolean;
  /** One line per criterion, with the figures (F1 in %); never document text. */
  reasons: string[];
  /** Names of the checks that failed: gold, holdout, gold-type:<Type>, gold-surface, distance. */
  failed: string[];
}

const FLOAT_TOLERANCE = 1e-12;

const pct = (x: number) => (100 * x).toFixed(2);

function bound(champion: number, delta: number): string {
  if (delta === 0) return `champion ${pct(champion)}`;
  return `champion ${pct(champion)} ${delta > 0 ? '+' : '-'} ${pct(Math.abs(delta))}`;
}

/**
 * The gate. `settings` as a number is the plain margin on gold and holdout (0: at least as good;
 * positive asks for a gain, negative tolerates a loss).
 */
export function decidePromotion(input: GateInput, settings: number | GateSettings = 0): GateDecision {
  const g = typeof settings === 'number' ? marginOnly(settings) : settings;
  const reasons: string[] = [];
  const failed: string[] = [];
  // Compare the gain with the allowed delta, with a tolerance for float rounding (0.8 + 0.05 > 0.85 in binary).
  const compare = (name: string, champion: number, challenger: number, delta: number, what: string) => {
    const ok = challenger - champion >= delta - FLOAT_TOLERANCE;
    if (!ok) failed.push(name);
    reasons.push(`${name}: challenger F1 ${pct(challenger)} ${ok ? '>=' : '<'} ${bound(champion, delta)} (${what})`);
  };
  if (input.gold.sentences === 0) {
    failed.push('gold');
    reasons.push('gold: no sentences to compare on; refusing');
  } else {
    compare('gold', input.gold.champion.f1, input.gold.challenger.f1, -g.goldTolerance, `${input.gold.sentences} sentences`);
  }
  if (input.holdout.sentences === 0) reasons.push('holdout: empty, not compared');
  else compare('holdout', input.holdout.champion.f1, input.holdout.challenger.f1, g.holdoutMargin, `${input.holdout.sentences} sentences`);
  if (input.goldTypes && Number.isFinite(g.typeTolerance)) {
    for (const [type, s] of Object.entries(input.goldTypes)) {
      if (s.champion.gold < g.typeMinEntities) continue;
      const ok = s.challenger.f1 - s.champion.f1 >= -g.typeTolerance - FLOAT_TOLERANCE;
      // Passing types stay out of the reasons (five lines of agreement say little); a failure names its type.
      if (!ok) compare(`gold-type ${type}`, s.champion.f1, s.challenger.f1, -g.typeTolerance, `${s.champion.gold} entities`);
    }
    if (!failed.some((f) => f.startsWith('gold-type'))) {
      const checked = Object.values(input.goldTypes).filter((s) => s.champion.gold >= g.typeMinEntities).length;
      reasons.push(`gold-type: no type with >= ${g.typeMinEntities} entities fell more than ${pct(g.typeTolerance)} points (${checked} types checked)`);
    }
  }
  if (input.goldSurfaces && Number.isFinite(g.surfaceMaxLoss)) {
    const checked = input.goldSurfaces.filter((s) => s.mentions >= g.surfaceMinMentions && s.champion > 0);
    // Counts only: the surfaces are document text and reasons are logged.
    const lost = checked.filter((s) => s.champion - s.challenger > g.surfaceMaxLoss * s.champion + FLOAT_TOLERANCE);
    if (lost.length > 0) {
      const worst = lost.reduce((a, b) => ((b.champion - b.challenger) / b.champion > (a.champion - a.challenger) / a.champion ? b : a));
      failed.push('gold-surface');
      reasons.push(
        `gold-surface: ${lost.length} of ${checked.length} surfaces with >= ${g.surfaceMinMentions} mentions lost more than ${pct(g.surfaceMaxLoss)}% of the mentions the champion found (worst: ${worst.champion} -> ${worst.challenger} of ${worst.mentions})`,
      );
    } else {
      reasons.push(`gold-surface: none of ${checked.length} surfaces with >= ${g.surfaceMinMentions} mentions lost more than ${pct(g.surfaceMaxLoss)}% of its found mentions`);
    }
  }
  if (input.relativeDistance !== undefined && g.maxRelativeDistance > 0) {
    const ok = input.relativeDistance <= g.maxRelativeDistance;
    if (!ok) failed.push('distance');
    reasons.push(`distance: ||theta - theta*||_1 / ||theta*||_1 = ${input.relativeDistance.toExponential(3)} ${ok ? '<=' : '>'} ${g.maxRelativeDistance.toExponential(3)}`);
  }
  return { promote: failed.length === 0, reasons, failed };
}

const SEMVER_SUFFIX = /^(.*)-(\d+)\.(\d+)\.(\d+)$/;

/**
 * The name of the version after `current`: its patch number plus one ("rmbert-medical-1.0.3" ->
 * "rmbert-medical-1.0.4"); a name without a version counts as 1.0.0. Names for which `taken`
 * answers true are skipped.
 */
export function nextVersionName(current: string, taken: (name: string) => boolean = () => false): string {
  const m = SEMVER_SUFFIX.exec(current);
  const base = m ? m[1] : current;
  const major = m ? Number(m[2]) : 1;
  const minor = m ? Number(m[3]) : 0;
  let patch = m ? Number(m[4]) + 1 : 1;
  for (;;) {
    const name = `${base}-${major}.${minor}.${patch}`;
    if (!taken(name)) return name;
    patch++;
  }
}
