#!/usr/bin/env python3
"""Convert CMeKG (the cmekg.pkl shipped in the PyPI package PyCMeKG 0.2.5) to the project's .spo format.

Downloads nothing. The pickle is read from, in this order:
  --pkl PATH      a cmekg.pkl file;
  --sdist PATH    a PyCMeKG sdist (.tar.gz) or wheel (.whl/.zip): the member pyCMeKG/model/cmekg.pkl is
                  read out of the archive with tarfile/zipfile, nothing is extracted or run;
  (default)       the installed package (python/requirements.txt pins PyCMeKG==0.2.5), located with
                  importlib.util.find_spec WITHOUT importing it (its __init__ would unpickle with the
                  unrestricted pickle module), else .cache/pycmekg/PyCMeKG-0.2.5.tar.gz if that exists
                  (`pip download PyCMeKG==0.2.5 --no-deps -d .cache/pycmekg`).
The pickle's sha256 must be the one of PyCMeKG 0.2.5 unless --allow-other-pickle is given.

The pickle is loaded with a restricted unpickler: cmekg.pkl is a protocol-0 pickle made only of dict, list
and str opcodes, so the unpickler resolves no global at all (find_class refuses every module.name, and
persistent ids are refused), which means the file cannot make the unpickler import or call anything.
Its shape is then checked: {subject: {relation: [object, ...]}}, all str.

Writes (default --out-dir .cache/kg, not committed):
  CMeKG.spo            the full graph: every (subject, relation, object) of the pickle, distinct, sorted.
                       Names are only trimmed of surrounding whitespace (as JavaScript's trim() sees it,
                       since the .spo loader refuses it); a triple whose field is then empty, or has a
                       control character, a tab or an unpaired surrogate, is dropped and counted.
  CMeKG-typed.spo      a derived, typed view for NER knowledge injection: (name, 类别, type) with the type
                       one of 疾病 症状 部位 治疗 检查, the vocabulary of data/kg/Medical.spo. CMeKG has no type
                       relation of its own, so the type is inferred from the relations (rules in this file
                       and in data/kg/CMeKG-PROVENANCE.md); objects of typed relations become names too.
  cmekg-stats.json     relation counts, drops by reason, typed counts, hashes.
With --provenance PATH, also writes the provenance note (deterministic: no dates or machine paths).
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import importlib.util
import io
import json
import os
import pickle
import sys
import tarfile
import unicodedata
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, Iterable

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = 'PyCMeKG'
VERSION = '0.2.5'
IMPORT_NAME = 'pyCMeKG'
PKL_MEMBER = 'pyCMeKG/model/cmekg.pkl'
EXPECTED_PKL_SHA256 = 'eb0ab98b384b4272feead720bbb5f262715973589004d8a5093c5020d954c4b5'
EXPECTED_PKL_BYTES = 46_161_729
SDIST_SHA256 = 'f9ef3704c19b767973f58f4c3bd50bf46ea175b4859184f4b2777e328d8b90a9'
DEFAULT_SDIST = ROOT / '.cache' / 'pycmekg' / f'{PACKAGE}-{VERSION}.tar.gz'
TYPE_RELATION = '类别'


# ---------------------------------------------------------------------------------------------------
# Restricted unpickling
# ---------------------------------------------------------------------------------------------------

#: Globals the unpickler may resolve, as (module, name). cmekg.pkl needs none: it is protocol 0 and holds
#: only DICT / LIST / UNICODE / SETITEM / APPEND / PUT / MARK opcodes (checked with pickletools). Every
#: opcode that could call something (REDUCE, BUILD, INST, OBJ, NEWOBJ, EXT*) needs a callable that only
#: find_class can supply, so an empty allowlist means nothing can be called.
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset()


class RefusedPickleError(pickle.UnpicklingError):
    """The pickle asked for something the restricted unpickler does not allow."""


class RestrictedUnpickler(pickle.Unpickler):
    """A pickle.Unpickler that resolves only the globals in ALLOWED_GLOBALS (none) and no persistent id."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise RefusedPickleError(
            f'refused global {module}.{name}: this unpickler resolves no globals (only plain dict, list and '
            f'str data are allowed), so the pickle cannot import or call anything'
        )

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedPickleError(f'refused persistent id {pid!r}: persistent ids are not allowed')


def restricted_load(stream: BinaryIO) -> Any:
    return RestrictedUnpickler(stream).load()


def restricted_loads(data: bytes) -> Any:
    return restricted_load(io.BytesIO(data))


# ---------------------------------------------------------------------------------------------------
# Finding the pickle
# ---------------------------------------------------------------------------------------------------


def installed_pkl_path() -> Path | None:
    """Path of cmekg.pkl in the installed package, found without importing (running) the package."""
    spec = importlib.util.find_spec(IMPORT_NAME)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / 'model' / 'cmekg.pkl'
        if candidate.is_file():
            return candidate
    return None


def read_member(archive: Path) -> bytes:
    """The bytes of pyCMeKG/model/cmekg.pkl inside an sdist (.tar.gz) or a wheel/zip."""
    name = archive.name
    if name.endswith(('.whl', '.zip')):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if info.filename.endswith(PKL_MEMBER):
                    return zf.read(info)
    elif name.endswith(('.tar.gz', '.tgz', '.tar')):
        with tarfile.open(archive, 'r:*') as tf:
            for member in tf.getmembers():
                if member.isfile() and member.name.endswith(PKL_MEMBER):
                    f = tf.extractfile(member)
                    assert f is not None
                    return f.read()
    else:
        raise SystemExit(f'cmekg_to_spo: {archive}: expected a .tar.gz sdist or a .whl/.zip wheel')
    raise SystemExit(f'cmekg_to_spo: {archive} has no member ending in {PKL_MEMBER}')


def locate_pickle(args: argparse.Namespace) -> tuple[bytes, str]:
    """The pickle's bytes and a description of where they came from."""
    if args.pkl:
        return Path(args.pkl).read_bytes(), f'file {args.pkl}'
    if args.sdist:
        return read_member(Path(args.sdist)), f'{PKL_MEMBER} inside {args.sdist}'
    path = installed_pkl_path()
    if path is not None:
        return path.read_bytes(), f'installed package {IMPORT_NAME} ({path})'
    if DEFAULT_SDIST.is_file():
        return read_member(DEFAULT_SDIST), f'{PKL_MEMBER} inside {DEFAULT_SDIST}'
    raise SystemExit(
        'cmekg_to_spo: no cmekg.pkl found: install the pinned package (bash scripts/setup-python.sh, which '
        f'installs python/requirements.txt), or `pip download {PACKAGE}=={VERSION} --no-deps -d .cache/pycmekg`, '
        'or pass --pkl / --sdist'
    )


# ---------------------------------------------------------------------------------------------------
# Names as the .spo loader (src/knowledge/spo.ts) accepts them
# ---------------------------------------------------------------------------------------------------

#: What JavaScript's String.prototype.trim() removes (WhiteSpace and LineTerminator of ECMA-262): the
#: .spo loader refuses a field that trim() would change.
JS_WHITESPACE = frozenset(
    '\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a'
    '\u2028\u2029\u202f\u205f\u3000\ufeff'
)


def js_trim(s: str) -> str:
    start, end = 0, len(s)
    while start < end and s[start] in JS_WHITESPACE:
        start += 1
    while end > start and s[end - 1] in JS_WHITESPACE:
        end -= 1
    return s[start:end]


def field_problem(s: str) -> str | None:
    """Why the loader would refuse `s` as a field (mirrors fieldProblem in src/knowledge/spo.ts)."""
    if s == '':
        return 'empty'
    if js_trim(s) != s:
        return 'surrounding whitespace'
    for ch in s:
        c = ord(ch)
        if c < 0x20 or 0x7F <= c <= 0x9F:
            return 'control character'
        if 0xD800 <= c <= 0xDFFF:
            return 'unpaired surrogate'
    return None


def clean(s: str) -> tuple[str | None, str | None]:
    """(name, None) when usable after trimming, else (None, reason)."""
    t = js_trim(s)
    problem = field_problem(t)
    return (t, None) if problem is None else (None, problem)


# ---------------------------------------------------------------------------------------------------
# Typing (the derived view)
# ---------------------------------------------------------------------------------------------------

#: Relations whose objects are, by the relation's meaning, of one type (the Medical.spo vocabulary).
#: Relations with mixed or free-text objects (常见病因, 病因, 高危因素, 功能主治, 成份, 诊断依据_临床表现, ...)
#: are left out on purpose.
OBJECT_TYPE_RELATIONS: dict[str, tuple[str, ...]] = {
    '症状': ('常见症状', '相关症状', '临床症状及体征', '主要症状', '术后症状', '不良反应', '侵及周围组织转移的症状',
           '侵及周围组织或转移的症状', '诊断依据_症状', '诊断依据_临床症状'),
    '疾病': ('并发症', '相关疾病', '鉴别诊断', '上位关系', '下位关系', '药物引起的并发症', '手术引起的并发症',
           '治疗引起的并发症', '适应症', '主治'),
    '部位': ('常见发病部位', '发病部位', '转移部位', '外侵部位'),
    '检查': ('检查', '实验室检查', '影像学检查', '辅助检查', '内窥镜检查', '组织学检查', '筛查', '其他检查',
           '术前准备_必检项目', '住院必检项目', '术后住院_必须复查的检查项目', '术后住院_必须复查的项目',
           '术后住院_可选择的检查项目', '术后住院_必要时复查的项目', '诊断依据_辅助检查', '诊断依据_实验室检查',
           '诊断依据_影像学检查'),
    '治疗': ('治疗', '手术治疗', '辅助治疗', '药物治疗', '化疗', '放射治疗', '相关药物', '手术_手术方式'),
}
RELATION_TYPE = {rel: t for t, rels in OBJECT_TYPE_RELATIONS.items() for rel in rels}

#: A subject's own relations tell its class (CMeKG's schema: diseases, drugs, exams). First rule that fits wins.
SUBJECT_CLASS_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ('检查', ('所属分类',)),  # exam pages: 所属分类 is an exam category (血, 生化检查, 超声, ...)
    ('疾病', ('常见症状', '就诊科室', '并发症', 'ICD10', '常见病因', '多发群体', '常见发病部位', '临床症状及体征',
            '上位关系', '鉴别诊断', '传染性', '高危因素', '病因', '发病部位')),
    # Drugs (and materia medica with drug fields) are typed 治疗, as data/kg/Medical.spo types drugs.
    ('治疗', ('成份', '不良反应', '适应症', 'OTC类型', '药品类型', '药品监管分级', '商品名', '通用名', '规格', '贮藏',
            '用法用量', '禁忌', '药物相互作用', '分类', '用途分类', '功能主治', '主治', '注意事项', '有效期')),
)

#: Inside a name these mark a list or a sentence, not a concept (恶心、呕吐; 胶囊剂，内容物为...).
LIST_PUNCTUATION = frozenset('，,、；;。！!？?')


def typed_name_problem(name: str, min_len: int, max_len: int) -> str | None:
    if len(name) < min_len:
        return f'shorter than {min_len} characters'
    if len(name) > max_len:
        return f'longer than {max_len} characters'
    if not any(unicodedata.category(ch).startswith('L') for ch in name):
        return 'no letter (digits or punctuation only)'
    if any(ch in LIST_PUNCTUATION for ch in name):
        return 'list or sentence punctuation inside'
    if unicodedata.category(name[0]).startswith('P'):
        return 'starts with punctuation'
    last = unicodedata.category(name[-1])
    if last.startswith('P') and last not in ('Pe', 'Pf'):
        return 'ends with punctuation'
    return None


# ---------------------------------------------------------------------------------------------------
# Conversion
# ---------------------------------------------------------------------------------------------------


def check_shape(db: Any) -> dict[str, dict[str, list[str]]]:
    if not isinstance(db, dict):
        raise SystemExit(f'cmekg_to_spo: expected a dict at the top of the pickle, found {type(db).__name__}')
    for subject, relations in db.items():
        if not isinstance(subject, str) or not isinstance(relations, dict):
            raise SystemExit(f'cmekg_to_spo: subject {subject!r}: expected str -> dict, found {type(relations).__name__}')
        for relation, objects in relations.items():
            if not isinstance(relation, str) or not isinstance(objects, list):
                raise SystemExit(f'cmekg_to_spo: {subject!r} / {relation!r}: expected str -> list')
            for o in objects:
                if not isinstance(o, str):
                    raise SystemExit(f'cmekg_to_spo: {subject!r} / {relation!r}: object of type {type(o).__name__}')
    return db


def write_spo(path: Path, triples: Iterable[tuple[str, str, str]]) -> tuple[int, str]:
    """Writes sorted triples; returns (bytes, sha256 of the file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = ''.join(f'{s}\t{r}\t{o}\n' for s, r, o in triples).encode('utf-8')
    tmp = path.with_suffix(path.suffix + '.tmp')
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return len(data), hashlib.sha256(data).hexdigest()


def version_stamp(triples: Iterable[tuple[str, str, str]]) -> str:
    """The KG version stamp of src/knowledge/spo.ts: sha256 over distinct triples sorted by UTF-16 code units."""
    keys = sorted({f'{s}\t{r}\t{o}' for s, r, o in triples}, key=lambda k: k.encode('utf-16-be'))
    h = hashlib.sha256()
    for k in keys:
        h.update(f'{k}\n'.encode('utf-8'))
    return h.hexdigest()


def convert(db: dict[str, dict[str, list[str]]], args: argparse.Namespace) -> dict[str, Any]:
    # Full graph.
    raw_triples = 0
    dropped: collections.Counter[str] = collections.Counter()
    trimmed = 0
    full: set[tuple[str, str, str]] = set()
    for subject, relations in db.items():
        for relation, objects in relations.items():
            for obj in objects:
                raw_triples += 1
                fields = []
                bad = None
                for kind, value in (('subject', subject), ('relation', relation), ('object', obj)):
                    name, problem = clean(value)
                    if name is None:
                        bad = f'{kind} {problem}'
                        break
                    if name != value:
                        trimmed += 1
                    fields.append(name)
                if bad is not None:
                    dropped[bad] += 1
                    continue
                full.add((fields[0], fields[1], fields[2]))
    full_sorted = sorted(full)
    rel_triples: collections.Counter[str] = collections.Counter(r for _, r, _ in full_sorted)
    rel_subjects: collections.Counter[str] = collections.Counter()
    rel_objects: dict[str, set[str]] = collections.defaultdict(set)
    last = None
    for s, r, o in full_sorted:
        if (s, r) != last:
            rel_subjects[r] += 1
            last = (s, r)
        rel_objects[r].add(o)
    subjects = {s for s, _, _ in full_sorted}
    objects = {o for _, _, o in full_sorted}

    # Typed view: evidence votes per (name, type).
    evidence: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    subject_classes: collections.Counter[str] = collections.Counter()
    by_subject: dict[str, set[str]] = collections.defaultdict(set)
    for s, r, _ in full_sorted:
        by_subject[s].add(r)
    for s, rels in by_subject.items():
        for t, markers in SUBJECT_CLASS_RULES:
            if any(m in rels for m in markers):
                evidence[s][t] += args.subject_weight
                subject_classes[t] += 1
                break
        else:
            subject_classes['(none)'] += 1
    for _, r, o in full_sorted:  # distinct triples: one vote per (subject, relation, object)
        t = RELATION_TYPE.get(r)
        if t is not None:
            evidence[o][t] += 1
    typed: list[tuple[str, str, str]] = []
    typed_drop: collections.Counter[str] = collections.Counter()
    types_per_name: collections.Counter[int] = collections.Counter()
    for name, votes in evidence.items():
        problem = typed_name_problem(name, args.min_name_length, args.max_name_length)
        if problem is not None:
            typed_drop[problem] += 1
            continue
        ranked = sorted(votes.items(), key=lambda kv: (-kv[1], kv[0]))
        top = ranked[0][1]
        keep = [t for t, n in ranked[: args.max_types] if n >= args.second_type_ratio * top]
        types_per_name[len(keep)] += 1
        typed.extend((name, TYPE_RELATION, t) for t in keep)
    typed.sort()
    typed_by_type = collections.Counter(t for _, _, t in typed)

    out_dir = Path(args.out_dir)
    full_path = out_dir / 'CMeKG.spo'
    typed_path = out_dir / 'CMeKG-typed.spo'
    full_bytes, full_sha = write_spo(full_path, full_sorted)
    typed_bytes, typed_sha = write_spo(typed_path, typed)
    return {
        'full': {
            'file': str(full_path),
            'bytes': full_bytes,
            'sha256': full_sha,
            'kgVersion': version_stamp(full_sorted),
            'pickleTriples': raw_triples,
            'triples': len(full_sorted),
            'duplicatesRemoved': raw_triples - sum(dropped.values()) - len(full_sorted),
            'droppedByReason': dict(dropped),
            'fieldsTrimmed': trimmed,
            'subjects': len(subjects),
            'objects': len(objects),
            'concepts': len(subjects | objects),
            'relations': len(rel_triples),
            'relationCounts': [
                {'relation': r, 'triples': n, 'subjects': rel_subjects[r], 'distinctObjects': len(rel_objects[r])}
                for r, n in sorted(rel_triples.items(), key=lambda kv: (-kv[1], kv[0]))
            ],
        },
        'typed': {
            'file': str(typed_path),
            'bytes': typed_bytes,
            'sha256': typed_sha,
            'kgVersion': version_stamp(typed),
            'triples': len(typed),
            'names': sum(types_per_name.values()),
            'namesByTypeCount': {str(k): v for k, v in sorted(types_per_name.items())},
            'triplesByType': dict(typed_by_type.most_common()),
            'subjectClasses': dict(subject_classes.most_common()),
            'candidateNames': len(evidence),
            'namesDroppedByReason': dict(typed_drop.most_common()),
            'options': {
                'minNameLength': args.min_name_length,
                'maxNameLength': args.max_name_length,
                'maxTypes': args.max_types,
                'secondTypeRatio': args.second_type_ratio,
                'subjectWeight': args.subject_weight,
            },
        },
    }


def provenance(stats: dict[str, Any], source_sha: str) -> str:
    full, typed = stats['full'], stats['typed']
    o = typed['options']
    fmt = lambda n: f'{n:,}'  # noqa: E731
    rel_rows = '\n'.join(
        f"| {r['relation']} | {fmt(r['triples'])} | {fmt(r['subjects'])} | {fmt(r['distinctObjects'])} | "
        f"{RELATION_TYPE.get(r['relation'], '')} |"
        for r in full['relationCounts'][:60]
    )
    type_rows = '\n'.join(f'| {t} | {", ".join(rels)} |' for t, rels in OBJECT_TYPE_RELATIONS.items())
    subj_rows = '\n'.join(f'| {t} | {", ".join(m)} |' for t, m in SUBJECT_CLASS_RULES)
    drops = ', '.join(f'{k} {fmt(v)}' for k, v in full['droppedByReason'].items()) or 'none'
    tdrops = '; '.join(f'{k}: {fmt(v)}' for k, v in typed['namesDroppedByReason'].items()) or 'none'
    by_type = ', '.join(f'{t} {fmt(n)}' for t, n in typed['triplesByType'].items())
    classes = ', '.join(f'{t} {fmt(n)}' for t, n in typed['subjectClasses'].items())
    ntypes = ', '.join(f'{k} type(s): {fmt(v)}' for k, v in typed['namesByTypeCount'].items())
    wm = stats.get('withMedical')
    with_medical = '' if wm is None else (
        f" Loaded together with Medical.spo\n(two `kg load` calls, or two loadSpoFile calls into one graph), {fmt(wm['namesInBoth'])} "
        f"names are in both files and {fmt(wm['namesWithMoreThan2Types'])} end up with\nmore than two types, of which "
        f"K-BERT's limit injects two."
    )
    return f"""# CMeKG as .spo: provenance

CMeKG (Chinese Medical Knowledge Graph), as shipped inside the PyPI package **{PACKAGE} {VERSION}** (github.com/king-yyf/PyCMeKG, author Yunfei Yang; released
2019-07). The converted files are **not committed** (the full graph is large); they are rebuilt into `.cache/kg/`
by the command below. This file is generated by that command (it is deterministic).

| field | value |
|---|---|
| package | {PACKAGE}=={VERSION} (pinned in python/requirements.txt; sdist only, no dependencies) |
| licence | MIT (LICENSE in the sdist: "Copyright (c) 2018-2019 cmekg authors"; PKG-INFO: License: MIT) |
| sdist sha256 | {SDIST_SHA256} |
| member | {PKL_MEMBER} ({fmt(EXPECTED_PKL_BYTES)} bytes) |
| pickle sha256 | {source_sha} |
| pickle format | protocol 0; only dict / list / str opcodes; shape {{subject: {{relation: [object, ...]}}}} |
| how it is read | restricted unpickler (no global, no persistent id can be resolved: the file cannot run code) |
| conversion | `.venv/bin/python scripts/kg/cmekg_to_spo.py --provenance data/kg/CMeKG-PROVENANCE.md` |

## CMeKG.spo (full graph)

| field | value |
|---|---|
| triples in the pickle | {fmt(full['pickleTriples'])} |
| triples written (distinct) | {fmt(full['triples'])} |
| duplicates removed | {fmt(full['duplicatesRemoved'])} |
| dropped (loader would refuse) | {drops} |
| fields trimmed of surrounding whitespace (NBSP) | {fmt(full['fieldsTrimmed'])} |
| subjects / distinct objects / concepts | {fmt(full['subjects'])} / {fmt(full['objects'])} / {fmt(full['concepts'])} |
| relations | {fmt(full['relations'])} (most are one-off 诊断依据_* / 手术_* keys of clinical pathways) |
| bytes | {fmt(full['bytes'])} |
| file sha256 | {full['sha256']} |
| KG version stamp | {full['kgVersion']} |

Format as data/kg/Medical.spo: UTF-8, `subject<TAB>relation<TAB>object\\n`, sorted, no duplicates. The loader
(src/knowledge/spo.ts) has no length limit; the longest field is a 诊断依据_* relation name (282 UTF-8 bytes).

Relations by triples (the first 60 of {full['relations']}; all are in `.cache/kg/cmekg-stats.json`; the last
column is the type the typed view gives the relation's objects):

| relation | triples | subjects | distinct objects | objects typed as |
|---|---|---|---|---|
{rel_rows}

CMeKG's subjects are mostly drugs, diseases, exams and materia medica ({fmt(full['subjects'])} names); what a
clinical sentence mentions (symptoms, body parts, short exam names) sits mostly in **object** position (常见症状,
常见发病部位, 检查, ...). The stage's matcher only looks for **subject** names, so the full graph, loaded as it is,
matches few of the medical NER entities (see benchmarks/results/knowledge-coverage.md), and what it would inject
(不良反应, 成份, 用法用量, ...) is not type knowledge.

## CMeKG-typed.spo (derived typed view)

CMeKG has no type relation of its own (no 类别; 所属科室 has 7 triples; 分类/用途分类/药品类型 classify drugs, 就诊
科室 departments of diseases, 所属分类 categories of exams). The typed view infers each name's type in the vocabulary
of Medical.spo, so that Medical.spo and this file can be loaded together:

- a subject gets {o['subjectWeight']} votes for the class its own relations show (first rule that fits):

| class | a subject with any of these relations |
|---|---|
{subj_rows}

- every (subject, relation, object) with a typed relation gives its object one vote:

| type | relations whose objects get that type |
|---|---|
{type_rows}

- a name keeps its best type, and a second one (at most {o['maxTypes']}, K-BERT's per-name limit) if that has at
  least {o['secondTypeRatio']} of the best one's votes. Drugs are typed 治疗 because Medical.spo types drugs so.
- names kept: {o['minNameLength']} to {o['maxNameLength']} characters, with a letter, without list or sentence
  punctuation (，、；。 ...) and not starting (or ending) with punctuation. One-character names (腹, 心, 肺 are listed
  as 常见症状) and numbers (10, 90) match everywhere: on the dev split, a first version with them gave about 7 matches
  per sentence of which 24% were a gold entity; without them about 4, of which 40% are.

| field | value |
|---|---|
| subjects by class | {classes} |
| candidate names | {fmt(typed['candidateNames'])} |
| names dropped | {tdrops} |
| names kept | {fmt(typed['names'])} ({ntypes}) |
| triples | {fmt(typed['triples'])}: {by_type} |
| bytes | {fmt(typed['bytes'])} |
| file sha256 | {typed['sha256']} |
| KG version stamp | {typed['kgVersion']} |

The typing rules were chosen from the relations' meaning and looked at on the dev split only (never on test);
the CMeKG relations are noisy (常见症状 lists 查体, 腹部, 骨骼 ...), so the injected type is the gold type for about
four matched gold entities in five (benchmarks/results/knowledge-coverage.md).{with_medical}
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog='cmekg_to_spo.py',
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument('--pkl', metavar='PATH', help='read this cmekg.pkl')
    src.add_argument('--sdist', metavar='PATH', help='read pyCMeKG/model/cmekg.pkl out of this sdist (.tar.gz) or wheel')
    p.add_argument('--allow-other-pickle', action='store_true',
                   help=f'accept a pickle whose sha256 is not that of {PACKAGE} {VERSION} ({EXPECTED_PKL_SHA256[:12]}...)')
    p.add_argument('--out-dir', default=str(ROOT / '.cache' / 'kg'), help='where to write the .spo files and stats (default: .cache/kg)')
    p.add_argument('--provenance', metavar='PATH', help='also write the provenance note there (e.g. data/kg/CMeKG-PROVENANCE.md)')
    p.add_argument('--min-name-length', type=int, default=2, help='typed view: shortest name kept, in characters (default 2)')
    p.add_argument('--max-name-length', type=int, default=30, help='typed view: longest name kept, in characters (default 30)')
    p.add_argument('--max-types', type=int, default=2, help='typed view: types kept per name (default 2, K-BERT injects at most 2 triples per name)')
    p.add_argument('--second-type-ratio', type=float, default=0.5,
                   help="typed view: keep a further type only with at least this share of the best type's votes (default 0.5)")
    p.add_argument('--subject-weight', type=int, default=3,
                   help="typed view: votes a subject's own class counts for (default 3; each typed object position counts 1)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    data, where = locate_pickle(args)
    sha = hashlib.sha256(data).hexdigest()
    if sha != EXPECTED_PKL_SHA256 and not args.allow_other_pickle:
        raise SystemExit(f'cmekg_to_spo: {where}: sha256 {sha} is not that of {PACKAGE} {VERSION}\'s cmekg.pkl '
                         f'({EXPECTED_PKL_SHA256}); pass --allow-other-pickle to convert it anyway')
    print(f'cmekg_to_spo: reading {where} ({len(data):,} bytes, sha256 {sha[:12]}...)', file=sys.stderr)
    try:
        db = check_shape(restricted_loads(data))
    except pickle.UnpicklingError as error:
        raise SystemExit(f'cmekg_to_spo: {where}: {error}') from error
    stats = convert(db, args)
    medical = ROOT / 'data' / 'kg' / 'Medical.spo'
    if medical.is_file():
        types: dict[str, set[str]] = collections.defaultdict(set)
        medical_names = set()
        for line in medical.read_text(encoding='utf-8').splitlines():
            s, _, o = line.split('\t')
            types[s].add(o)
            medical_names.add(s)
        typed_names = set()
        for line in Path(stats['typed']['file']).read_text(encoding='utf-8').splitlines():
            s, _, o = line.split('\t')
            types[s].add(o)
            typed_names.add(s)
        stats['withMedical'] = {
            'namesInBoth': len(medical_names & typed_names),
            'namesWithMoreThan2Types': sum(len(v) > 2 for v in types.values()),
        }
    stats['source'] = {'package': PACKAGE, 'version': VERSION, 'read': where, 'pickleSha256': sha, 'pickleBytes': len(data)}
    out_dir = Path(args.out_dir)
    (out_dir / 'cmekg-stats.json').write_text(json.dumps(stats, ensure_ascii=False, indent=2) + '\n', encoding='utf-8')
    if args.provenance:
        Path(args.provenance).write_text(provenance(stats, sha), encoding='utf-8')
    f, t = stats['full'], stats['typed']
    print(f"cmekg_to_spo: {f['file']}: {f['triples']:,} triples, {f['subjects']:,} subjects, {f['relations']} relations, "
          f"{f['bytes']:,} bytes", file=sys.stderr)
    print(f"cmekg_to_spo: {t['file']}: {t['triples']:,} triples, {t['names']:,} names, {t['bytes']:,} bytes", file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
