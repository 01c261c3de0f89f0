/**
 * The promotion gate and the naming of promoted versions.
 *
 * Gate: a challenger replaces the champion only if its strict micro F1 is at least the champion's
 * (plus an optional margin) on the frozen gold set AND on the feedback holdout. An empty holdout
 * gives no evidence either way, so only the gold set decides then (and the decision says so).
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
}

export interface GateDecision {
  promote: boolean;
  /** One line per criterion, with the figures (F1 in %). */
  reasons: string[];
}

const FLOAT_TOLERANCE = 1e-12;

const pct = (x: number) => (100 * x).toFixed(2);

/** `margin` 0: at least as good. A positive margin asks for a gain, a negative one tolerates a loss. */
export function decidePromotion(input: GateInput, margin = 0): GateDecision {
  const reasons: string[] = [];
  let promote = true;
  const check = (name: string, s: SetScores) => {
    // Compare the gain with the margin, with a tolerance for float rounding (0.8 + 0.05 > 0.85 in binary).
    const ok = s.challenger.f1 - s.champion.f1 >= margin - FLOAT_TOLERANCE;
    if (!ok) promote = false;
    reasons.push(
      `${name}: challenger F1 ${pct(s.challenger.f1)} ${ok ? '>=' : '<'} ${margin === 0 ? `champion ${pct(s.champion.f1)}` : `champion ${pct(s.champion.f1)} ${margin > 0 ? '+' : '-'} ${pct(Math.abs(margin))}`} (${s.sentences} sentences)`,
    );
  };
  if (input.gold.sentences === 0) {
    promote = false;
    reasons.push('gold: no sentences to compare on; refusing');
  } else {
    check('gold', input.gold);
  }
  if (input.holdout.sentences === 0) reasons.push('holdout: empty, not compared');
  else check('holdout', input.holdout);
  return { promote, reasons };
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
