"""The restricted unpickler of scripts/kg/cmekg_to_spo.py: plain data loads, anything that needs a global is refused."""
import importlib.util
import io
import os
import pickle
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location('cmekg_to_spo', ROOT / 'scripts' / 'kg' / 'cmekg_to_spo.py')
cmekg = importlib.util.module_from_spec(_spec)
sys.modules['cmekg_to_spo'] = cmekg
_spec.loader.exec_module(cmekg)


class RunsCommand:
    """Unpickling this would call os.system (the classic pickle exploit)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


@pytest.mark.parametrize('protocol', [0, 2, pickle.HIGHEST_PROTOCOL])
def test_os_system_is_refused_and_not_run(tmp_path, protocol):
    marker = tmp_path / 'pwned'
    data = pickle.dumps(RunsCommand(marker), protocol=protocol)
    with pytest.raises(cmekg.RefusedPickleError, match=r'refused global (posix|os|nt)\.system'):
        cmekg.restricted_loads(data)
    assert not marker.exists()


def test_hand_written_global_reduce_is_refused():
    # Protocol 0 by hand: GLOBAL 'os system', MARK, UNICODE 'echo hi', TUPLE, REDUCE, STOP.
    data = b'cos\nsystem\n(Vecho hi\ntR.'
    with pytest.raises(cmekg.RefusedPickleError):
        cmekg.restricted_loads(data)


def test_builtins_eval_and_containers_are_refused():
    for payload in (pickle.dumps(eval), pickle.dumps({1, 2}, protocol=0), pickle.dumps(bytearray(b'x'), protocol=0)):
        with pytest.raises(cmekg.RefusedPickleError):
            cmekg.restricted_loads(payload)


def test_persistent_id_is_refused():
    class P(pickle.Pickler):
        def persistent_id(self, obj):
            return 'ext' if obj == 'secret' else None

    buf = io.BytesIO()
    P(buf, protocol=2).dump(['secret'])
    with pytest.raises(cmekg.RefusedPickleError, match='persistent id'):
        cmekg.restricted_loads(buf.getvalue())


@pytest.mark.parametrize('protocol', [0, 2, pickle.HIGHEST_PROTOCOL])
def test_plain_dict_and_list_load(protocol):
    value = {'支气管肺癌': {'常见症状': ['咳嗽', '咯血'], '就诊科室': ['肿瘤科']}, 'n': [1, 2.5, None, True, 'x']}
    assert cmekg.restricted_loads(pickle.dumps(value, protocol=protocol)) == value
    assert cmekg.restricted_loads(pickle.dumps(['a', ['b'], {}], protocol=protocol)) == ['a', ['b'], {}]


def test_shape_check_and_conversion_of_a_tiny_graph(tmp_path):
    db = {
        '肺炎': {'常见症状': ['发热', '咳嗽', '\xa0咳痰', ''], '就诊科室': ['呼吸内科'], '常见发病部位': ['肺部']},
        '阿莫西林胶囊': {'成份': ['阿莫西林'], '适应症': ['肺炎'], '不良反应': ['皮疹', '10']},
    }
    data = pickle.dumps(db, protocol=0)
    loaded = cmekg.check_shape(cmekg.restricted_loads(data))
    args = cmekg.build_parser().parse_args(['--out-dir', str(tmp_path)])
    stats = cmekg.convert(loaded, args)
    full = (tmp_path / 'CMeKG.spo').read_text(encoding='utf-8').splitlines()
    assert stats['full']['triples'] == len(full) == 9  # the empty object is dropped, NBSP trimmed
    assert stats['full']['droppedByReason'] == {'object empty': 1}
    assert '肺炎\t常见症状\t咳痰' in full
    typed = set((tmp_path / 'CMeKG-typed.spo').read_text(encoding='utf-8').splitlines())
    assert {'肺炎\t类别\t疾病', '发热\t类别\t症状', '肺部\t类别\t部位', '阿莫西林胶囊\t类别\t治疗', '皮疹\t类别\t症状'} <= typed
    assert not any(line.startswith('10\t') for line in typed)  # a number is not a name
    with pytest.raises(SystemExit):
        cmekg.check_shape({'x': {'r': 'not a list'}})
