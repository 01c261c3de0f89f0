#!/usr/bin/env python3
"""Reference tokenizations for src/model/tokenizer.ts, made by Hugging Face's own BERT tokenizers.

Ids come from the reference Python implementation (transformers' legacy BasicTokenizer + WordpieceTokenizer,
do_lower_case=True, tokenize_chinese_chars=True, as bert-base-chinese); character offsets from the Rust
fast tokenizer (converted from code points to UTF-16 code units, as JavaScript strings count).

The product folds full-width ASCII forms and the ideographic space before lookup (normalizeCodeUnit in
src/domain/text.ts), which Hugging Face does not: the same folding is applied to the text given to the
references (one code unit to one, so offsets are unchanged) and the fixture keeps the original text.
Texts with characters where the product deviates on purpose (form feed and friends separate words;
U+FFFD, private-use and unassigned characters become [UNK]) are left out. Known small differences the
test allows: a token's end includes the combining marks and format characters that follow it (the
fast tokenizer's stops before them); Greek capital sigma lowers to σ even at a word's end (Python's
str.lower gives ς there), so no curated text has a word-final capital sigma.

Writes test/fixtures/parity/tokenizer.json. Needs `transformers` (and its `tokenizers`) in the venv:
  .venv/bin/pip install transformers && .venv/bin/python scripts/parity/make_tokenizer_fixture.py
"""
import hashlib
import json
import os
import unicodedata

from transformers.models.bert.tokenization_bert import BertTokenizer as FastBertTokenizer
from transformers.models.bert.tokenization_bert_legacy import BasicTokenizer, WordpieceTokenizer

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..')
SHARED = os.path.join(ROOT, '..', 'shared', 'data')
VOCAB = os.path.join(ROOT, 'data', 'vocab', 'vocab.txt')
OUT = os.path.join(ROOT, 'test', 'fixtures', 'parity', 'tokenizer.json')
MAX_CHARS = 240

CURATED = [
    'CT示右肺12mm结节', 'COVID-19', 'ＣＴ', '患者，男，５６岁。ＣＴ示：右肺Ａ段', '体温 37.5℃，血压120/80mmHg',
    'Café naïve résumé ÉCOLE', 'ｉＰｈｏｎｅ　ＸＳ', 'e-mail: foo.bar@example.com', 'α-干扰素、β受体阻滞剂',
    '“引号”‘单引号’《书名》【括号】…—～', 'HbA1c 7.2%, LDL-C 3.4mmol/L', '左侧第Ⅲ肋骨骨折', '①②③ ⅰⅱ ⑴',
    '𠀀𪚥😂a😂', 'ab🦠 x', '한국어 テスト カタカナ ひらがな', 'İstanbul straße', 'x' * 101, 'x' * 100,
    '\u200bab\u200bcd\u0007 ', '\ufeff肺\u0000', 'cafe\u0301 x', '\u0301a', '豈更', 'unaffable', '',
    '  \t\n ', '1,000,000.00元', 'AUC=0.93（95%CI:0.90-0.96）', 'Ⅱ型糖尿病', 'p<0.05', 'C/T比值',
]


def fold(text):
    out = []
    for ch in text:
        c = ord(ch)
        if 0xFF01 <= c <= 0xFF5E:
            c -= 0xFEE0
        elif c == 0x3000:
            c = 0x20
        if 0x41 <= c <= 0x5A:
            c += 0x20
        out.append(chr(c))
    return ''.join(out)


def deviates(text):
    for ch in text:
        c = ord(ch)
        if c in (0x0B, 0x0C, 0x85, 0xFFFD) or 0x1C <= c <= 0x1F:
            return True
        if unicodedata.category(ch) in ('Co', 'Cn', 'Cs'):
            return True
    return False


def utf16_index(text):
    """Code point index -> UTF-16 code unit index."""
    idx = [0]
    for ch in text:
        idx.append(idx[-1] + (2 if ord(ch) > 0xFFFF else 1))
    return idx


def main():
    vocab = {}
    with open(VOCAB, encoding='utf-8') as f:
        for i, line in enumerate(f.read().split('\n')[:-1]):
            vocab.setdefault(line, i)
    basic = BasicTokenizer(do_lower_case=True, tokenize_chinese_chars=True)
    wordpiece = WordpieceTokenizer(vocab=vocab, unk_token='[UNK]', max_input_chars_per_word=100)
    fast = FastBertTokenizer(vocab=VOCAB, do_lower_case=True, tokenize_chinese_chars=True)

    texts = list(CURATED)
    with open(os.path.join(SHARED, 'zh-corpus-uer', 'corpora', 'news-commentary-v13-en-zh_sampled.txt'), encoding='utf-8') as f:
        for line in f.read().split('\n')[:60]:
            texts.extend(part[:MAX_CHARS] for part in line.split('\t') if part)
    with open(os.path.join(SHARED, 'zh-corpus-uer', 'corpora', 'CLUECorpusSmall_sampled.txt'), encoding='utf-8') as f:
        texts.extend(line[:MAX_CHARS] for line in f.read().split('\n')[:80] if line)
    with open(os.path.join(SHARED, 'kbert-medical-ner', 'dev.tsv'), encoding='utf-8') as f:
        texts.extend(line.split('\t')[0].replace(' ', '') for line in f.read().split('\n')[1:61] if line)

    cases, left_out, offset_mismatch = [], 0, 0
    for text in texts:
        if deviates(text):
            left_out += 1
            continue
        folded = fold(text)
        tokens = [p for w in basic.tokenize(folded) for p in wordpiece.tokenize(w)]
        ids = [vocab[t] for t in tokens]
        enc = fast._tokenizer.encode(folded, add_special_tokens=False)
        case = {'text': text, 'ids': ids}
        if enc.ids == ids:
            u16 = utf16_index(folded)
            case['offsets'] = [[u16[s], u16[e]] for s, e in enc.offsets]
        else:
            offset_mismatch += 1
        cases.append(case)
    with open(VOCAB, 'rb') as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    with open(OUT, 'w', encoding='utf-8') as f:
        json.dump({'vocabSha256': sha, 'cases': cases}, f, ensure_ascii=False)
        f.write('\n')
    print(f'{len(cases)} cases ({left_out} left out as deliberate deviations; {offset_mismatch} without fast-tokenizer offsets)')


if __name__ == '__main__':
    main()
