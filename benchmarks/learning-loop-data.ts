/**
 * Clinical sentences of this project's own making for the learning-loop benchmark and its
 * integration test (never the test split): templates with a target term (a symptom the model may
 * miss) and a context symptom it knows. Three disjoint template sets: feedback, sweep (to choose the
 * trainer's defaults) and held-out (the reported figure), so the held-out sentences are phrased
 * differently from anything trained on.
 */
import type { NerSentence } from '../src/train/datasets.ts';

export interface Labelled {
  text: string;
  entities: { start: number; end: number; text: string; type: string }[];
  /** Index of the target term's entity. */
  target: number;
}

const FEEDBACK_TEMPLATES = [
  '患者{T}{n}天，伴{C}。',
  '今日诉{T}，{C}较前好转。',
  '患者自述{T}，无{C}。',
  '入院前{n}天无明显诱因出现{T}、{C}。',
  '{n}月前出现{T}，未予重视，近日伴{C}。',
  '患者仍有{T}，{C}已缓解。',
  '近{n}日{T}加重，伴{C}。',
  '主诉：{T}{n}天，{C}{n}天。',
];
const SWEEP_TEMPLATES = ['查房时患者诉{T}，{C}缓解。', '患者{n}周来反复{T}，偶有{C}。', '晨起{T}，午后{C}。'];
const HELDOUT_TEMPLATES = ['刻下：{T}，{C}，二便调。', '病程中患者{T}明显，无{C}。', '患者因{T}{n}天就诊，伴{C}。', '昨日起感{T}，伴{C}{n}次。'];
export const CONTEXT_SYMPTOMS = ['头痛', '发热', '咳嗽', '恶心', '腹痛', '胸闷', '心悸'];
/** Symptoms the knowledge graph or the training set knows (so a wrong type for them can be caught). */
export const CANDIDATE_TERMS = ['头昏', '乏力', '心慌', '气短', '耳鸣', '失眠', '便秘', '反酸', '流涕', '尿频', '尿痛', '食欲不振', '四肢麻木'];

function fill(template: string, target: string, context: string, n: number, type: string): Labelled {
  let text = '';
  const entities: Labelled['entities'] = [];
  let target_ = -1;
  for (const part of template.split(/(\{[TCn]\})/)) {
    if (part === '{T}' || part === '{C}') {
      const t = part === '{T}' ? target : context;
      if (part === '{T}') target_ = entities.length;
      entities.push({ start: text.length, end: text.length + t.length, text: t, type: part === '{T}' ? type : 'Symptom' });
      text += t;
    } else text += part === '{n}' ? String(n) : part;
  }
  return { text, entities, target: target_ };
}

/** `count` sentences cycling over terms, templates and context symptoms (deterministic). */
export function makeSentences(set: 'feedback' | 'sweep' | 'heldout', terms: readonly string[], count: number, type = 'Symptom', offset = 0): Labelled[] {
  const templates = set === 'feedback' ? FEEDBACK_TEMPLATES : set === 'sweep' ? SWEEP_TEMPLATES : HELDOUT_TEMPLATES;
  const out: Labelled[] = [];
  for (let i = offset; i < offset + count; i++) {
    const term = terms[i % terms.length];
    const template = templates[Math.floor(i / terms.length) % templates.length];
    const context = CONTEXT_SYMPTOMS[(i * 3 + 1) % CONTEXT_SYMPTOMS.length];
    out.push(fill(template, term, context, (i % 9) + 2, type));
  }
  return out;
}

/** As character-level BIO sentences (the texts are BMP-only). */
export function toNer(s: Labelled): NerSentence {
  const chars = Array.from(s.text);
  const labels = chars.map(() => 'O');
  for (const e of s.entities) {
    labels[e.start] = `B-${e.type}`;
    for (let i = e.start + 1; i < e.end; i++) labels[i] = `I-${e.type}`;
  }
  return { chars, text: s.text, labels, repaired: [] };
}
