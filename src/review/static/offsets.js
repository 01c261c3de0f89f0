// Span and offset logic of the review page, shared by the page (a browser ES module) and the server's
// validation of a submission. Offsets are UTF-16 code units of the document text, [start, end), as in
// EntityAnnotations and Feedback; a boundary never falls between the two halves of a surrogate pair.

/** The values of each assertion property (schemas/Feedback.avsc, GoldAssertion); the first is the default. */
export const ASSERTION_VALUES = {
  polarity: ['present', 'absent'],
  certainty: ['certain', 'possible'],
  temporality: ['current', 'historical'],
  experiencer: ['patient', 'other'],
};

/** @param {number} c */
function isHigh(c) {
  return c >= 0xd800 && c <= 0xdbff;
}
/** @param {number} c */
function isLow(c) {
  return c >= 0xdc00 && c <= 0xdfff;
}

/** True when offset i falls between the two halves of a surrogate pair. */
export function splitsPair(text, i) {
  return i > 0 && i < text.length && isHigh(text.charCodeAt(i - 1)) && isLow(text.charCodeAt(i));
}

/** The boundary one character (code point) before i, or 0. */
export function prevBoundary(text, i) {
  if (i <= 0) return 0;
  const j = i - 1;
  return splitsPair(text, j) ? j - 1 : j;
}

/** The boundary one character (code point) after i, or text.length. */
export function nextBoundary(text, i) {
  if (i >= text.length) return text.length;
  const j = i + 1;
  return splitsPair(text, j) ? j + 1 : j;
}

/** The text's characters (code points) with their offsets: [{ start, end, ch }]. */
export function cells(text) {
  const out = [];
  for (let i = 0; i < text.length; ) {
    const j = nextBoundary(text, i);
    out.push({ start: i, end: j, ch: text.slice(i, j) });
    i = j;
  }
  return out;
}

/** A selection [a, b) (either order) widened so that it splits no surrogate pair; null when empty. */
export function normaliseRange(text, a, b) {
  let start = Math.max(0, Math.min(a, b, text.length));
  let end = Math.min(text.length, Math.max(a, b, 0));
  if (splitsPair(text, start)) start -= 1;
  if (splitsPair(text, end)) end += 1;
  return end > start ? { start, end } : null;
}

export function overlaps(a, b) {
  return a.start < b.end && b.start < a.end;
}

function byStart(a, b) {
  return a.start - b.start || a.end - b.end;
}

/**
 * The entity list with a new span of `type` over [start, end): entities it overlaps are replaced by it
 * (the reviewer's selection wins). Returns { entities, index } (index of the new span in the sorted list).
 */
export function addSpan(text, entities, start, end, type) {
  const range = normaliseRange(text, start, end);
  if (range === null) return null;
  const span = { start: range.start, end: range.end, text: text.slice(range.start, range.end), type, score: null, linked: [], assertion: null, origin: 'reviewer' };
  const kept = entities.filter((e) => !overlaps(e, range));
  const next = [...kept, span].sort(byStart);
  return { entities: next, index: next.indexOf(span) };
}

/**
 * Moves one boundary of entity `index` by one character: edge 'start' or 'end', dir -1 (left) or +1
 * (right). Null when the move would empty the span, leave the text or run into a neighbour.
 */
export function nudge(text, entities, index, edge, dir) {
  const e = entities[index];
  if (!e) return null;
  let { start, end } = e;
  if (edge === 'start') start = dir < 0 ? prevBoundary(text, start) : nextBoundary(text, start);
  else end = dir < 0 ? prevBoundary(text, end) : nextBoundary(text, end);
  if (start === e.start && end === e.end) return null;
  if (start >= end || start < 0 || end > text.length) return null;
  if (entities.some((o, i) => i !== index && overlaps(o, { start, end }))) return null;
  const moved = { ...e, start, end, text: text.slice(start, end), origin: 'reviewer' };
  return entities.map((o, i) => (i === index ? moved : o));
}

/**
 * Every problem with a submitted entity list (empty: valid), without quoting the text: offsets in
 * range, integral, not splitting a surrogate pair, a known type, an assertion (optional) of known
 * values, no two entities overlapping.
 */
export function entityProblems(text, entities, types, maxEntities) {
  const problems = [];
  if (!Array.isArray(entities)) return ['entities must be a list'];
  if (entities.length > maxEntities) problems.push(`more than ${maxEntities} entities`);
  const known = new Set(types);
  const sorted = [];
  entities.forEach((e, i) => {
    if (typeof e !== 'object' || e === null) return void problems.push(`entity ${i}: not an object`);
    const { start, end, type } = e;
    if (!Number.isInteger(start) || !Number.isInteger(end)) return void problems.push(`entity ${i}: start and end must be integers`);
    if (start < 0 || end > text.length || start >= end) return void problems.push(`entity ${i}: [${start}, ${end}) is not a non-empty range of the text (length ${text.length})`);
    if (splitsPair(text, start) || splitsPair(text, end)) problems.push(`entity ${i}: [${start}, ${end}) splits a surrogate pair`);
    if (typeof type !== 'string' || !known.has(type)) problems.push(`entity ${i}: type is not one of ${[...known].join(', ')}`);
    if (e.assertion !== undefined && e.assertion !== null) {
      if (typeof e.assertion !== 'object') problems.push(`entity ${i}: assertion must be an object or null`);
      else {
        for (const [key, symbols] of Object.entries(ASSERTION_VALUES)) {
          if (!symbols.includes(e.assertion[key])) problems.push(`entity ${i}: assertion.${key} must be one of ${symbols.join(', ')}`);
        }
      }
    }
    sorted.push({ start, end, i });
  });
  sorted.sort(byStart);
  for (let k = 1; k < sorted.length; k++) {
    if (sorted[k].start < sorted[k - 1].end) problems.push(`entities ${sorted[k - 1].i} and ${sorted[k].i} overlap`);
  }
  return problems;
}
