// The trainer panel: the trainer's rounds (from GET /api/trainer), refreshed every 5 s; a chart of
// champion and challenger F1 on the gold set and the feedback holdout. No inline script (CSP).
const $ = (id) => document.getElementById(id);
const SVG = 'http://www.w3.org/2000/svg';
const SERIES = [
  { key: 'goldChampion', label: 'gold, champion', colour: '#24364b', dash: '6 4' },
  { key: 'goldChallenger', label: 'gold, challenger', colour: '#24364b', dash: '' },
  { key: 'holdoutChampion', label: 'holdout, champion', colour: '#c0392b', dash: '6 4' },
  { key: 'holdoutChallenger', label: 'holdout, challenger', colour: '#c0392b', dash: '' },
];

const pct = (x) => (x === null || x === undefined ? '–' : (100 * x).toFixed(2));
const time = (ms) => new Date(ms).toLocaleString();

function el(name, attrs = {}, text = '') {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text) e.textContent = text;
  return e;
}

function chart(rounds) {
  const svg = $('chart');
  svg.replaceChildren();
  const scored = rounds.filter((r) => SERIES.some((s) => r.scores[s.key] !== null));
  if (scored.length === 0) {
    svg.append(el('text', { x: 20, y: 40 }, 'no scored round yet'));
    return;
  }
  const W = 900, H = 280, L = 50, R = 10, T = 10, B = 30;
  const values = scored.flatMap((r) => SERIES.map((s) => r.scores[s.key]).filter((v) => v !== null));
  let lo = Math.min(...values), hi = Math.max(...values);
  if (hi - lo < 0.02) { lo -= 0.01; hi += 0.01; }
  const x = (i) => L + (scored.length === 1 ? (W - L - R) / 2 : (i * (W - L - R)) / (scored.length - 1));
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  for (let k = 0; k <= 4; k++) {
    const v = lo + ((hi - lo) * k) / 4;
    svg.append(el('line', { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: '#ddd' }));
    svg.append(el('text', { x: 4, y: y(v) + 4, 'font-size': 11 }, pct(v)));
  }
  scored.forEach((r, i) => svg.append(el('text', { x: x(i) - 4, y: H - 10, 'font-size': 11 }, String(i + 1))));
  for (const s of SERIES) {
    const pts = scored.map((r, i) => [i, r.scores[s.key]]).filter(([, v]) => v !== null);
    if (pts.length > 1) svg.append(el('polyline', { points: pts.map(([i, v]) => `${x(i)},${y(v)}`).join(' '), fill: 'none', stroke: s.colour, 'stroke-width': 2, 'stroke-dasharray': s.dash }));
    for (const [i, v] of pts) {
      const r = scored[i];
      const dot = el('circle', { cx: x(i), cy: y(v), r: 4, fill: r.outcome === 'promoted' ? s.colour : '#fff', stroke: s.colour });
      dot.append(el('title', {}, `round ${i + 1} (${r.outcome}): ${s.label} ${pct(v)}`));
      svg.append(dot);
    }
  }
  $('chart-legend').replaceChildren(...SERIES.map((s) => {
    const span = document.createElement('span');
    span.textContent = `${s.dash ? '- - ' : '—— '}${s.label}`;
    span.className = s.key.startsWith('gold') ? 'series-gold' : 'series-holdout';
    return span;
  }), Object.assign(document.createElement('span'), { textContent: 'filled dot: promoted; open: refused' }));
}

async function refresh() {
  const res = await fetch('/api/trainer', { credentials: 'same-origin' });
  if (res.status === 401) return window.location.assign('/login');
  const v = await res.json();
  $('in-service').textContent = v.inService ? `in service: ${v.inService.version} (since ${time(v.inService.since)})` : 'in service: the model the stage started with (no promotion yet)';
  const t = v.trainer;
  const parts = [];
  if (!t.url) parts.push('trainer metrics not configured (--trainer-metrics-url): promoted rounds only');
  else if (!t.reachable) parts.push(t.error || 'trainer not read yet');
  else {
    parts.push(t.roundInProgressSince ? `round in progress since ${time(t.roundInProgressSince)}` : 'no round in progress');
    parts.push(t.ready ? 'ready' : 'not ready');
    parts.push(`feedback stored: ${Object.entries(t.stored).map(([k, n]) => `${k} ${n}`).join(', ') || 'none'}`);
    parts.push(`rounds: ${Object.entries(t.totals).map(([k, n]) => `${k} ${n}`).join(', ') || 'none'}`);
  }
  $('trainer-status').textContent = parts.join(' · ');
  chart(v.rounds);
  $('rounds').tBodies[0].replaceChildren(...[...v.rounds].reverse().map((r) => {
    const tr = document.createElement('tr');
    const cells = [time(r.endedAt), r.outcome, r.failed.join(', ') || (r.outcome === 'promoted' ? 'every check passed' : ''), r.version || '', pct(r.scores.goldChampion), pct(r.scores.goldChallenger), pct(r.scores.holdoutChampion), pct(r.scores.holdoutChallenger), r.durationSeconds === null ? '' : r.durationSeconds.toFixed(1)];
    for (const c of cells) {
      const td = document.createElement('td');
      td.textContent = c;
      tr.append(td);
    }
    tr.dataset.outcome = r.outcome;
    return tr;
  }));
  document.body.dataset.ready = 'true';
}

void refresh();
setInterval(() => void refresh(), 5000);
