// The review page: one document at a time, its entities highlighted by type; correction by mouse and
// keyboard; the complete corrected list submitted as one Feedback record. No inline script: the page's
// Content-Security-Policy allows scripts from this origin only. Offsets are UTF-16 code units.
import { ASSERTION_VALUES, addSpan, cells, normaliseRange, nextBoundary, nudge, prevBoundary } from '/offsets.js';

const $ = (id) => document.getElementById(id);
const state = {
  session: null,
  queue: [],
  item: null,
  entities: [],
  original: '',
  history: [],
  focused: -1,
  caret: 0,
  anchor: null,
  mouseSel: null,
  cellEls: [],
  cells: [],
};

async function api(path, options = {}) {
  const headers = { ...(options.body ? { 'content-type': 'application/json' } : {}) };
  if (options.method && options.method !== 'GET' && state.session?.csrfToken) headers['x-csrf-token'] = state.session.csrfToken;
  const res = await fetch(path, { credentials: 'same-origin', ...options, headers });
  if (res.status === 401) {
    window.location.assign('/login');
    throw new Error('signed out');
  }
  const body = await res.json().catch(() => ({}));
  return { ok: res.ok, status: res.status, body };
}

function say(message) {
  $('status').textContent = message;
}

function typeClass(type) {
  const i = state.session.types.indexOf(type);
  return `t${(i < 0 ? state.session.types.length : i) % 9}`;
}

function serialise(entities) {
  return JSON.stringify(entities.map((e) => [e.start, e.end, e.type, e.assertion ? [e.assertion.polarity, e.assertion.certainty, e.assertion.temporality, e.assertion.experiencer] : null]));
}

function edited() {
  return serialise(state.entities) !== state.original;
}

// ---- queue

async function loadQueue() {
  const params = new URLSearchParams();
  if ($('filter-type').value) params.set('type', $('filter-type').value);
  if ($('filter-model').value) params.set('modelVersion', $('filter-model').value);
  const { body } = await api(`/api/queue?${params}`);
  state.queue = body.items;
  const c = body.counts;
  $('progress').textContent = `${c.reviewed} reviewed · ${c.waiting} waiting${c.dropped ? ` · ${c.dropped} dropped (queue full)` : ''}`;
  fillSelect($('filter-type'), body.facets.types);
  fillSelect($('filter-model'), body.facets.modelVersions);
  const list = $('queue');
  list.replaceChildren();
  for (const q of state.queue) {
    const li = document.createElement('li');
    const b = document.createElement('button');
    b.type = 'button';
    b.dataset.reviewId = q.reviewId;
    b.textContent = `${q.documentId} · ${q.entityCount} entities · min score ${q.confidence.toFixed(2)}`;
    b.setAttribute('aria-label', `Document ${q.documentId}, ${q.entityCount} entities, lowest score ${q.confidence.toFixed(2)}, model ${q.modelVersion}`);
    if (state.item && state.item.reviewId === q.reviewId) b.setAttribute('aria-current', 'true');
    b.addEventListener('click', () => openItem(q.reviewId));
    li.append(b);
    list.append(li);
  }
  $('empty').hidden = state.queue.length > 0;
}

function fillSelect(select, values) {
  const current = select.value;
  const keep = select.options[0];
  select.replaceChildren(keep, ...values.map((v) => new Option(v, v)));
  select.value = values.includes(current) ? current : '';
}

async function openItem(reviewId) {
  const { ok, body } = await api(`/api/items/${encodeURIComponent(reviewId)}`);
  if (!ok) {
    say(body.error || 'cannot open this document');
    await loadQueue();
    return;
  }
  state.item = body;
  state.entities = body.entities.map((e) => ({ ...e, origin: 'model' }));
  state.original = serialise(state.entities);
  state.history = [];
  state.focused = -1;
  state.caret = 0;
  state.anchor = null;
  state.mouseSel = null;
  state.cells = cells(body.text);
  $('doc-view').hidden = false;
  $('empty').hidden = true;
  renderMeta();
  render();
  for (const b of $('queue').querySelectorAll('button')) b.setAttribute('aria-current', String(b.dataset.reviewId === reviewId));
  say('');
  $('text').focus();
}

async function openNext() {
  await loadQueue();
  if (state.queue.length > 0) await openItem(state.queue[0].reviewId);
  else {
    state.item = null;
    $('doc-view').hidden = true;
    $('empty').hidden = false;
  }
}

// ---- rendering

function renderMeta() {
  const it = state.item;
  const rows = [
    ['Document', it.documentId],
    ['Model version', it.modelVersion],
    ['Knowledge graph', it.kgVersion || '(none)'],
    ['Lowest score', it.confidence.toFixed(3)],
  ];
  if (it.section) rows.push(['Section', it.section]);
  if ('patientRef' in it) rows.push(['Patient', it.patientRef]);
  if (it.kgDegraded) rows.push(['Note', 'knowledge graph was unavailable for some concepts']);
  $('meta').replaceChildren(
    ...rows.flatMap(([k, v]) => {
      const dt = document.createElement('dt');
      dt.textContent = k;
      const dd = document.createElement('dd');
      dd.textContent = v;
      return [dt, dd];
    }),
  );
  const legend = $('legend');
  legend.replaceChildren(
    ...state.session.types.map((t, i) => {
      const s = document.createElement('span');
      s.className = typeClass(t);
      s.textContent = i < 9 ? `${i + 1} ${t}` : t;
      return s;
    }),
  );
  $('new-type').replaceChildren(...state.session.types.map((t) => new Option(t, t)));
}

function entityLabel(e) {
  const score = e.score === null || e.score === undefined ? 'added by you' : `score ${e.score.toFixed(2)}`;
  const assertion = e.assertion && (e.assertion.polarity !== 'present' || e.assertion.certainty !== 'certain' || e.assertion.temporality !== 'current' || e.assertion.experiencer !== 'patient')
    ? `, ${[e.assertion.polarity, e.assertion.certainty, e.assertion.temporality, e.assertion.experiencer].join(' ')}`
    : '';
  return `${e.text}: ${e.type}, ${score}${assertion}`;
}

function render() {
  const container = $('text');
  const hadFocus = container.contains(document.activeElement);
  container.replaceChildren();
  state.cellEls = [];
  let k = 0;
  let mark = null;
  for (const c of state.cells) {
    while (k < state.entities.length && state.entities[k].end <= c.start) k++;
    const e = state.entities[k];
    const inside = e && e.start <= c.start && c.end <= e.end;
    if (inside && (!mark || Number(mark.dataset.index) !== k)) {
      mark = document.createElement('mark');
      mark.dataset.index = String(k);
      mark.className = `${typeClass(e.type)}${e.origin === 'reviewer' ? ' reviewer' : ''}`;
      mark.tabIndex = 0;
      mark.setAttribute('role', 'button');
      mark.setAttribute('aria-label', entityLabel(e));
      mark.title = entityLabel(e);
      const m = mark;
      m.addEventListener('focus', () => focusEntity(Number(m.dataset.index), false));
      m.addEventListener('mouseenter', () => showDetails(Number(m.dataset.index)));
      m.addEventListener('click', () => m.focus());
      container.append(mark);
    } else if (!inside) mark = null;
    const span = document.createElement('span');
    span.dataset.start = String(c.start);
    span.dataset.end = String(c.end);
    span.textContent = c.ch;
    (inside ? mark : container).append(span);
    state.cellEls.push(span);
  }
  paintSelection();
  if (state.focused >= 0 && state.focused < state.entities.length) {
    const m = container.querySelector(`mark[data-index="${state.focused}"]`);
    if (m && hadFocus) m.focus();
    showDetails(state.focused);
  } else {
    if (hadFocus) container.focus();
    showDetails(-1);
  }
  $('accept').disabled = edited();
  $('undo').disabled = state.history.length === 0;
}

function keyboardSelection() {
  if (state.anchor === null) return null;
  return normaliseRange(state.item.text, state.anchor, state.caret);
}

function paintSelection() {
  const sel = keyboardSelection();
  for (const el of state.cellEls) {
    const s = Number(el.dataset.start);
    el.classList.toggle('ksel', sel !== null && s >= sel.start && s < sel.end);
    el.classList.toggle('caret', s === state.caret);
  }
}

const ASSERTION_KEYS = { p: 'polarity', c: 'certainty', h: 'temporality', o: 'experiencer' };

function paintAssertion(index) {
  const e = state.entities[index];
  $('assertion').disabled = !e;
  for (const box of $('assertion').querySelectorAll('input')) box.checked = Boolean(e?.assertion && e.assertion[box.dataset.key] === box.dataset.on);
}

/** Flips one assertion property of entity `index` (an entity the stage did not assess starts from the defaults). */
function toggleAssertion(index, key) {
  const e = state.entities[index];
  if (!e) return say('no entity chosen');
  const [first, second] = ASSERTION_VALUES[key];
  const current = e.assertion ?? { polarity: 'present', certainty: 'certain', temporality: 'current', experiencer: 'patient', triggers: [] };
  const assertion = { ...current, [key]: current[key] === second ? first : second };
  change(state.entities.map((o, i) => (i === index ? { ...o, assertion, origin: 'reviewer' } : o)), `${e.text}: ${key} ${assertion[key]}`, index);
}

function showDetails(index) {
  paintAssertion(index);
  const box = $('details');
  const e = state.entities[index];
  if (!e) {
    box.textContent = 'Select an entity (Tab, or point at it) to see its score and linked concepts.';
    return;
  }
  const score = e.score === null || e.score === undefined ? 'added by you' : `model score ${e.score.toFixed(3)}${e.origin === 'reviewer' ? ' (before your correction)' : ''}`;
  const lines = [`${e.text} — ${e.type} [${e.start}, ${e.end})`, score];
  if (e.linked && e.linked.length) lines.push(`linked concepts: ${e.linked.map((l) => `${l.relation} ${l.object}`).join('; ')}`);
  else lines.push('linked concepts: none');
  if (e.assertion) {
    const a = e.assertion;
    lines.push(`assertion: ${a.polarity}, ${a.certainty}, ${a.temporality}, ${a.experiencer}${a.triggers.length ? ` (triggers: ${a.triggers.map((t) => `${t.text} ${t.property}`).join(', ')})` : ''}`);
  } else lines.push('assertion: not assessed');
  box.replaceChildren(
    ...lines.map((l) => {
      const p = document.createElement('p');
      p.textContent = l;
      return p;
    }),
  );
}

function focusEntity(index, move = true) {
  state.focused = index;
  showDetails(index);
  if (move) $('text').querySelector(`mark[data-index="${index}"]`)?.focus();
}

// ---- editing

function change(next, message, focus = state.focused) {
  state.history.push(state.entities);
  state.entities = next;
  state.focused = focus;
  render();
  say(message);
}

function undo() {
  if (state.history.length === 0) return say('nothing to undo');
  state.entities = state.history.pop();
  state.focused = Math.min(state.focused, state.entities.length - 1);
  render();
  say('undone');
}

function currentSelection() {
  return keyboardSelection() ?? state.mouseSel;
}

function addFromSelection(type) {
  const sel = currentSelection();
  if (!sel) return say('select characters first (Shift+arrows, or the mouse)');
  const result = addSpan(state.item.text, state.entities, sel.start, sel.end, type);
  if (!result) return say('empty selection');
  state.anchor = null;
  state.mouseSel = null;
  window.getSelection()?.removeAllRanges();
  change(result.entities, `added ${type} ${result.entities[result.index].text}`, result.index);
}

function retype(index, type) {
  const e = state.entities[index];
  if (!e) return say('no entity chosen');
  if (e.type === type) return;
  change(state.entities.map((o, i) => (i === index ? { ...o, type, origin: 'reviewer' } : o)), `${e.text} is now ${type}`, index);
}

function move(index, edge, dir) {
  const next = nudge(state.item.text, state.entities, index, edge, dir);
  if (!next) return say('cannot move that boundary further');
  change(next, `${next[index].text} [${next[index].start}, ${next[index].end})`, index);
}

function remove(index) {
  const e = state.entities[index];
  if (!e) return say('no entity chosen');
  state.caret = e.start;
  change(state.entities.filter((_, i) => i !== index), `deleted ${e.text}`, -1);
  $('text').focus();
}

async function submit(accepting) {
  if (!state.item) return;
  if (accepting && edited()) return say('there are corrections: use Submit corrections');
  const entities = state.entities.map((e) => ({
    start: e.start,
    end: e.end,
    type: e.type,
    assertion: e.assertion ? { polarity: e.assertion.polarity, certainty: e.assertion.certainty, temporality: e.assertion.temporality, experiencer: e.assertion.experiencer } : null,
  }));
  $('submit').disabled = true;
  try {
    const { ok, body } = await api(`/api/items/${encodeURIComponent(state.item.reviewId)}/submit`, { method: 'POST', body: JSON.stringify({ entities }) });
    if (!ok) return say(`not submitted: ${body.error}${body.problems?.length ? ` (${body.problems.join('; ')})` : ''}`);
    say(`submitted ${state.item.documentId}: ${body.entityCount} entities`);
    await openNext();
    say(`submitted: ${body.entityCount} entities`);
  } finally {
    $('submit').disabled = false;
  }
}

// ---- input

function typeForDigit(key) {
  const d = Number(key);
  return Number.isInteger(d) && d >= 1 && d <= 9 ? state.session.types[d - 1] : undefined;
}

function onTextKey(event) {
  const text = state.item.text;
  const mark = event.target.closest?.('mark');
  if (mark && mark !== event.currentTarget) {
    const index = Number(mark.dataset.index);
    const type = typeForDigit(event.key);
    if (type) retype(index, type);
    else if (event.key === 'Delete' || event.key === 'Backspace') remove(index);
    else if (ASSERTION_KEYS[event.key] && !event.ctrlKey && !event.altKey) toggleAssertion(index, ASSERTION_KEYS[event.key]);
    else if ((event.key === 'ArrowLeft' || event.key === 'ArrowRight') && (event.altKey || event.shiftKey)) move(index, event.altKey ? 'start' : 'end', event.key === 'ArrowLeft' ? -1 : 1);
    else if (event.key === 'Escape') {
      state.caret = state.entities[index].start;
      state.focused = -1;
      $('text').focus();
      paintSelection();
    } else return;
    event.preventDefault();
    return;
  }
  if (event.key === 'ArrowLeft' || event.key === 'ArrowRight' || event.key === 'Home' || event.key === 'End') {
    if (event.shiftKey && state.anchor === null) state.anchor = state.caret;
    if (!event.shiftKey) state.anchor = null;
    if (event.key === 'ArrowLeft') state.caret = prevBoundary(text, state.caret);
    else if (event.key === 'ArrowRight') state.caret = nextBoundary(text, state.caret);
    else state.caret = event.key === 'Home' ? 0 : text.length;
    state.mouseSel = null;
    paintSelection();
    const sel = keyboardSelection();
    say(sel ? `selected ${text.slice(sel.start, sel.end)}` : `cursor at ${state.caret}: ${text.slice(state.caret, nextBoundary(text, state.caret)) || 'end'}`);
  } else if (typeForDigit(event.key)) addFromSelection(typeForDigit(event.key));
  else if (event.key === 'Enter' && !event.ctrlKey) addFromSelection($('new-type').value);
  else if (event.key === 'Escape') {
    state.anchor = null;
    paintSelection();
  } else return;
  event.preventDefault();
}

function onMouseUp() {
  const sel = window.getSelection();
  if (!sel || sel.rangeCount === 0 || sel.isCollapsed) return;
  const range = sel.getRangeAt(0);
  const cellOf = (node) => (node.nodeType === Node.TEXT_NODE ? node.parentElement : node)?.closest?.('[data-start]');
  const a = cellOf(range.startContainer);
  const b = cellOf(range.endContainer);
  if (!a || !b || !$('text').contains(a) || !$('text').contains(b)) return;
  const start = Number(a.dataset.start) + (range.startContainer.nodeType === Node.TEXT_NODE && range.startOffset >= a.textContent.length ? a.textContent.length : 0);
  const end = range.endContainer.nodeType === Node.TEXT_NODE && range.endOffset === 0 ? Number(b.dataset.start) : Number(b.dataset.end);
  state.mouseSel = normaliseRange(state.item.text, start, end);
  state.anchor = null;
  paintSelection();
  if (state.mouseSel) say(`selected ${state.item.text.slice(state.mouseSel.start, state.mouseSel.end)}: press a digit or Add span`);
}

async function main() {
  const { body } = await api('/api/session');
  state.session = body;
  $('reviewer').textContent = `reviewer ${body.reviewer}`;
  $('text').addEventListener('keydown', onTextKey);
  $('text').addEventListener('mouseup', onMouseUp);
  $('text').addEventListener('focus', () => {
    state.focused = -1;
    showDetails(-1);
  });
  $('add').addEventListener('click', () => addFromSelection($('new-type').value));
  $('retype').addEventListener('click', () => retype(state.focused, $('new-type').value));
  $('start-left').addEventListener('click', () => move(state.focused, 'start', -1));
  $('start-right').addEventListener('click', () => move(state.focused, 'start', 1));
  $('end-left').addEventListener('click', () => move(state.focused, 'end', -1));
  $('end-right').addEventListener('click', () => move(state.focused, 'end', 1));
  $('delete').addEventListener('click', () => remove(state.focused));
  for (const box of $('assertion').querySelectorAll('input')) box.addEventListener('change', () => toggleAssertion(state.focused, box.dataset.key));
  $('undo').addEventListener('click', undo);
  $('accept').addEventListener('click', () => submit(true));
  $('submit').addEventListener('click', () => submit(false));
  $('filter-type').addEventListener('change', openNext);
  $('filter-model').addEventListener('change', openNext);
  $('logout').addEventListener('click', async () => {
    await api('/api/logout', { method: 'POST' });
    window.location.assign('/login');
  });
  document.addEventListener('keydown', (event) => {
    if (!state.item) return;
    if (event.ctrlKey && (event.key === 'z' || event.key === 'Z')) {
      event.preventDefault();
      undo();
    } else if (event.ctrlKey && event.key === 'Enter') {
      event.preventDefault();
      void submit(false);
    } else if (event.key === 'n' && !event.ctrlKey && !event.altKey && event.target.tagName !== 'SELECT') {
      const i = state.queue.findIndex((q) => q.reviewId === state.item.reviewId);
      const next = state.queue[i + 1] ?? state.queue[0];
      if (next) void openItem(next.reviewId);
    }
  });
  await openNext();
  document.body.dataset.ready = 'true';
}

void main();
