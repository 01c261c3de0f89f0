import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AssertionAnnotator } from '../../../src/assertion/index.ts';
import type { Assertion } from '../../../src/assertion/index.ts';

const annotator = AssertionAnnotator.withDefaultLexicon();

/** Entities given by their text (the n-th occurrence with `name#n`), so the cases read like the records. */
function assertAll(text: string, names: string[], types: Record<string, string> = {}): Record<string, Assertion> {
  const spans = names.map((name) => {
    const [surface, nth] = name.split('#');
    let at = -1;
    for (let k = 0; k <= Number(nth ?? 0); k++) at = text.indexOf(surface, at + 1);
    assert.ok(at >= 0, `${surface} not in ${text}`);
    return { start: at, end: at + surface.length, type: types[name] };
  });
  const results = annotator.annotate(text, spans);
  return Object.fromEntries(names.map((name, i) => [name, results[i]]));
}

const code = (a: Assertion): string =>
  [a.polarity, a.certainty, a.temporality, a.experiencer].join('/');

describe('AssertionAnnotator: negation', () => {
  it('否认 negates every item of a 、 list and 病史 makes them history', () => {
    const r = assertAll('否认高血压、糖尿病、心脏病病史。', ['高血压', '糖尿病', '心脏病']);
    for (const name of ['高血压', '糖尿病', '心脏病']) assert.equal(code(r[name]), 'absent/certain/historical/patient', name);
    assert.deepEqual(r['高血压'].triggers, [
      { start: 0, end: 2, text: '否认', property: 'negation' },
      { start: 13, end: 15, text: '病史', property: 'history' },
    ]);
  });

  it('a comma followed by nothing but list items keeps the scope open (否认高血压，糖尿病病史)', () => {
    const r = assertAll('既往体健，否认高血压，糖尿病病史，2.患者缘于1年前无明显诱因出现腰痛。', ['高血压', '糖尿病', '腰痛']);
    assert.equal(code(r['高血压']), 'absent/certain/historical/patient');
    assert.equal(code(r['糖尿病']), 'absent/certain/historical/patient');
    // The enumeration mark 2. ends the clause and 无明显诱因 is a pseudo-trigger: the back pain is real.
    assert.equal(r['腰痛'].polarity, 'present');
  });

  it('无发热，咳嗽咳痰: a bare list after the comma stays negated; a clause with its own verb does not', () => {
    const bare = assertAll('无发热，咳嗽咳痰。', ['发热', '咳嗽', '咳痰']);
    assert.deepEqual(['发热', '咳嗽', '咳痰'].map((n) => bare[n].polarity), ['absent', 'absent', 'absent']);
    const withVerb = assertAll('无发热，伴咳嗽咳痰。', ['发热', '咳嗽', '咳痰']);
    assert.deepEqual(['发热', '咳嗽', '咳痰'].map((n) => withVerb[n].polarity), ['absent', 'present', 'present']);
  });

  it('sentence punctuation ends every scope', () => {
    const r = assertAll('患者无发热。咳嗽3天。', ['发热', '咳嗽']);
    assert.equal(r['发热'].polarity, 'absent');
    assert.equal(r['咳嗽'].polarity, 'present');
  });

  it('a real history of present illness: repeated 无 clauses, 伴 asserts, pseudo 无明显诱因', () => {
    const text =
      '患者缘于3天前无明显诱因出现阵发性意识丧失，伴流涎，无头晕、头痛，无肢体活动不利，无抽搐及二便失禁，无恶心呕吐。';
    const r = assertAll(text, ['意识丧失', '流涎', '头晕', '头痛', '肢体', '抽搐', '二便', '恶心', '呕吐'], {
      肢体: 'BodyPart',
      二便: 'BodyPart',
    });
    assert.deepEqual(
      ['意识丧失', '流涎', '头晕', '头痛', '肢体', '抽搐', '二便', '恶心', '呕吐'].map((n) => r[n].polarity),
      ['present', 'present', 'absent', 'absent', 'present', 'absent', 'present', 'absent', 'absent'],
    );
  });

  it('a trigger that ends its clause looks back: 肝脾肋下未触及, 病理反射未引出', () => {
    const r = assertAll('腹软，肝脾肋下未触及，生理反射存在，病理反射未引出。', ['肝脾', '生理反射', '病理反射']);
    assert.equal(r['肝脾'].polarity, 'absent');
    assert.equal(r['生理反射'].polarity, 'present');
    assert.equal(r['病理反射'].polarity, 'absent');
    assert.equal(r['病理反射'].triggers[0].text, '未引出');
  });

  it('阴性 negates the signs before it in its clause, not those of the previous clause', () => {
    const r = assertAll('拾物试验（+），双侧巴彬斯基氏征、克尼格氏征阴性。', ['拾物试验', '巴彬斯基氏征', '克尼格氏征']);
    assert.deepEqual(
      ['拾物试验', '巴彬斯基氏征', '克尼格氏征'].map((n) => r[n].polarity),
      ['present', 'absent', 'absent'],
    );
  });

  it('a body part is where the finding is: 双下肢无水肿 negates the oedema, not the legs', () => {
    const r = assertAll('双下肢无水肿，无双下肢静脉曲张。', ['双下肢', '水肿', '双下肢#1', '静脉曲张'], {
      双下肢: 'BodyPart',
      '双下肢#1': 'BodyPart',
      水肿: 'Symptom',
      静脉曲张: 'Symptom',
    });
    assert.deepEqual(
      ['双下肢', '水肿', '双下肢#1', '静脉曲张'].map((n) => r[n].polarity),
      ['present', 'absent', 'present', 'absent'],
    );
  });

  it('a rule that names BodyPart applies to it: 左手环指远端缺如', () => {
    const r = assertAll('左手环指远端缺如。', ['左手环指远端'], { 左手环指远端: 'BodyPart' });
    assert.equal(r['左手环指远端'].polarity, 'absent');
  });

  it('a trigger inside an entity is part of its name (四肢无力)', () => {
    const r = assertAll('患者四肢无力2天。', ['四肢无力']);
    assert.equal(code(r['四肢无力']), 'present/certain/current/patient');
    assert.deepEqual(r['四肢无力'].triggers, []);
  });

  it('头颅CT未见异常: the exam was done, 未见异常 negates nothing', () => {
    const r = assertAll('头颅CT未见异常，腹部CT未见异常。', ['头颅CT', '腹部CT']);
    assert.equal(r['头颅CT'].polarity, 'present');
    assert.equal(r['腹部CT'].polarity, 'present');
  });
});

describe('AssertionAnnotator: uncertainty', () => {
  it('不除外 makes a finding possible, not absent', () => {
    const r = assertAll('腰椎退变，不除外腰椎间盘突出症。', ['腰椎间盘突出症']);
    assert.equal(code(r['腰椎间盘突出症']), 'present/possible/current/patient');
  });

  it('可能 after a finding; the exam before the colon stays certain', () => {
    const r = assertAll('我院泌尿系超声示：前列腺增生可能；双肾未见异常。', ['泌尿系超声', '前列腺增生', '双肾']);
    assert.equal(r['泌尿系超声'].certainty, 'certain');
    assert.equal(r['前列腺增生'].certainty, 'possible');
    assert.equal(r['双肾'].certainty, 'certain');
  });

  it('？ in a numbered diagnosis list qualifies its own item only (half-width ? too)', () => {
    const r = assertAll('诊断为：1.胆囊结石伴急性胆囊炎2.胆管结石?3.慢性阻塞性肺疾病', ['急性胆囊炎', '胆管结石', '慢性阻塞性肺疾病']);
    assert.deepEqual(
      ['急性胆囊炎', '胆管结石', '慢性阻塞性肺疾病'].map((n) => r[n].certainty),
      ['certain', 'possible', 'certain'],
    );
  });

  it('考虑 introduces an impression; 考虑患者… is reasoning', () => {
    assert.equal(assertAll('观片后考虑左侧气胸。', ['左侧气胸'])['左侧气胸'].certainty, 'possible');
    assert.equal(assertAll('考虑患者病史较长，头晕症状较前减轻。', ['头晕'])['头晕'].certainty, 'certain');
  });

  it('待查 makes a disease possible but not a presenting symptom (rule limited by entity type)', () => {
    const text = '以1、急性上呼吸道感染2、抽搐待查收入院。';
    const symptom = assertAll(text, ['抽搐'], { 抽搐: 'Symptom' });
    assert.equal(symptom['抽搐'].certainty, 'certain');
    const disease = assertAll('门诊以肺癌待查收入院。', ['肺癌'], { 肺癌: 'Disease' });
    assert.equal(disease['肺癌'].certainty, 'possible');
  });
});

describe('AssertionAnnotator: history and experiencer', () => {
  it('既往 reaches to the end of the sentence; 现 ends it', () => {
    const r = assertAll('既往有高血压病史10年，糖尿病5年，现腹痛2天。', ['高血压', '糖尿病', '腹痛']);
    assert.equal(r['高血压'].temporality, 'historical');
    assert.equal(r['糖尿病'].temporality, 'historical');
    assert.equal(r['腹痛'].temporality, 'current');
  });

  it('the onset of the present illness is not past history', () => {
    const r = assertAll('患者于10年前无明显诱因出现腰部疼痛，时轻时重。', ['疼痛']);
    assert.equal(code(r['疼痛']), 'present/certain/current/patient');
  });

  it('曾 makes a past procedure historical', () => {
    const r = assertAll('患者女31岁，曾于10年前行剖宫产手术。', ['剖宫产手术']);
    assert.equal(r['剖宫产手术'].temporality, 'historical');
  });

  it('a family member is the experiencer; family acting for the patient is not', () => {
    assert.equal(assertAll('其父患有糖尿病。', ['糖尿病'])['糖尿病'].experiencer, 'other');
    assert.equal(assertAll('家族中有高血压病史。', ['高血压'])['高血压'].experiencer, 'other');
    assert.equal(assertAll('否认遗传病家族史。', ['遗传病'])['遗传病'].experiencer, 'other');
    const helped = assertAll('患者3天前由家人发现右股内侧红肿，由家人送至我院。', ['红肿']);
    assert.equal(helped['红肿'].experiencer, 'patient');
  });

  it('the heading 既往及家族史 introduces the patient\'s own history', () => {
    const r = assertAll('4、既往及家族史：既往体健，自述阿奇霉素过敏史，否认食物过敏史。', ['阿奇霉素']);
    assert.equal(code(r['阿奇霉素']), 'present/certain/historical/patient');
  });
});

describe('AssertionAnnotator: offsets', () => {
  it('works on a whole document: offsets and trigger spans are into the text given', () => {
    const text = '主因腹痛3天入院。查体：腹软，无压痛。';
    const r = annotator.annotate(text, [
      { start: text.indexOf('腹痛'), end: text.indexOf('腹痛') + 2 },
      { start: text.indexOf('压痛'), end: text.indexOf('压痛') + 2 },
    ]);
    assert.equal(r[0].polarity, 'present');
    assert.equal(r[1].polarity, 'absent');
    assert.deepEqual(r[1].triggers, [{ start: text.indexOf('无'), end: text.indexOf('无') + 1, text: '无', property: 'negation' }]);
  });

  it('returns one assertion per entity, in order, and nothing for none', () => {
    assert.deepEqual(annotator.annotate('无发热。', []), []);
    const r = annotator.annotate('无发热，无咳嗽。', [
      { start: 5, end: 7 },
      { start: 1, end: 3 },
    ]);
    assert.equal(r.length, 2);
    assert.equal(r[0].triggers[0].start, 4);
    assert.equal(r[1].triggers[0].start, 0);
  });
});
