"""Loaders read every supported layout, and a wrong path or column names the path and format.

Real dev splits at ../shared/data are read when present (never copied into the repo)."""

import json
from pathlib import Path

import pytest

from embedgate.quality.datasets import (DatasetError, load_beir, load_code_pairs, load_pairs,
                                load_parallel_crosslingual, load_retrieval)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_datasets_tsv_with_column_mapping(tmp_path):
    f = _write(tmp_path / "d.tsv", 'a\tb\tsim\nHe said "hi"\tx\t4.5\ny\tz\t0\n')
    data = load_pairs(f, columns={"sentence1": "a", "sentence2": "b", "score": "sim"})
    assert data.sentence1 == ('He said "hi"', "y") and data.gold == (4.5, 0.0)
    assert len(data.sha256) == 64 and data.name == "d"


def test_datasets_csv_jsonl_json_read_alike(tmp_path):
    rows = [{"s1": "a, b", "s2": "c", "y": 1}, {"s1": "d", "s2": "e", "y": 0}]
    csv_file = _write(tmp_path / "d.csv", 's1,s2,y\n"a, b",c,1\nd,e,0\n')
    jsonl = _write(tmp_path / "d.jsonl", "\n".join(json.dumps(r) for r in rows))
    js = _write(tmp_path / "d.json", json.dumps(rows))
    cols = {"sentence1": "s1", "sentence2": "s2", "score": "y"}
    loaded = [load_pairs(f, columns=cols) for f in (csv_file, jsonl, js)]
    assert {(d.sentence1, d.gold) for d in loaded} == {(("a, b", "d"), (1.0, 0.0))}


def test_datasets_glue_stsb_layout(tmp_path):
    f = _write(tmp_path / "dev.tsv",
               "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2"
               "\tscore\n0\tmain\tx\t2012\t1\tnone\tnone\tA man plays.\tA man is playing.\t5.000\n")
    data = load_pairs(f, format="stsb")
    assert data.sentence2 == ("A man is playing.",) and data.gold == (5.0,)


def test_datasets_xnli_drops_neutral_and_reads_gold_label(tmp_path):
    f = _write(tmp_path / "xnli.tsv", "language\tgold_label\tsentence1\tsentence2\n"
               "de\tentailment\ta\tb\nde\tneutral\tc\td\nfr\tcontradiction\te\tf\n"
               "de\tcontradiction\tg\th\n")
    data = load_pairs(f, format="xnli", filter={"language": "de"})
    assert data.gold == (1.0, 0.0) and data.sentence1 == ("a", "g")
    assert "1 rows dropped" in data.notes[0]


def test_datasets_missing_file_names_path_and_format(tmp_path):
    with pytest.raises(DatasetError) as err:
        load_pairs(tmp_path / "nope.tsv")
    assert str(tmp_path / "nope.tsv") in str(err.value)
    assert "header row" in str(err.value) and "sentence1" in str(err.value)


def test_datasets_missing_column_lists_the_columns_there(tmp_path):
    f = _write(tmp_path / "d.tsv", "text_a\ttext_b\tlabel\nx\ty\t1\n")
    with pytest.raises(DatasetError, match=r"missing column 'sentence1'.*text_a"):
        load_pairs(f)


def test_datasets_bad_label_names_row_and_labels(tmp_path):
    f = _write(tmp_path / "d.tsv", "sentence1\tsentence2\tlabel\nx\ty\tmaybe\n")
    with pytest.raises(DatasetError, match=r"row 1: label 'maybe'"):
        load_pairs(f, format="xnli")


def test_datasets_beir_folder(tmp_path):
    _write(tmp_path / "corpus.jsonl", '{"_id": "d1", "title": "T", "text": "body"}\n'
           '{"_id": "d2", "title": "", "text": "other"}\n')
    _write(tmp_path / "queries.jsonl", '{"_id": "q1", "text": "find", "lang": "de"}\n'
           '{"_id": "q2", "text": "unjudged"}\n')
    _write(tmp_path / "qrels" / "test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t0\n")
    data = load_beir(tmp_path)
    assert data.corpus["d1"] == "T body" and data.qrels == {"q1": {"d1": 1}}
    assert data.query_languages == {"q1": "de"}
    assert load_retrieval(tmp_path).sha256 == data.sha256


def test_datasets_beir_without_qrels_says_what_it_looked_for(tmp_path):
    _write(tmp_path / "corpus.jsonl", '{"_id": "d1", "text": "x"}\n')
    _write(tmp_path / "queries.jsonl", '{"_id": "q1", "text": "y"}\n')
    with pytest.raises(DatasetError, match=r"no qrels file.*qrels/<split>.tsv"):
        load_beir(tmp_path)


def test_datasets_code_pairs_become_retrieval(tmp_path):
    rows = [{"query": "sort list", "code": "sorted(x)", "label": 1},
            {"query": "sort list", "code": "open(f)", "label": 0},
            {"query": "read file", "code": "open(f)", "label": 1},
            {"query": "nothing", "code": "pass", "label": 0}]
    f = _write(tmp_path / "pairs.jsonl", "\n".join(json.dumps(r) for r in rows))
    data = load_code_pairs(f)
    assert len(data.corpus) == 3 and len(data) == 2
    assert "1 queries without a relevant snippet" in data.notes[0]


def test_datasets_hf_saved_to_disk(tmp_path):
    hf = pytest.importorskip("datasets")
    hf.Dataset.from_dict({"sentence1": ["a", "b"], "sentence2": ["c", "d"],
                          "score": [1.0, 2.0]}).save_to_disk(str(tmp_path / "ds"))
    assert load_pairs(tmp_path / "ds").gold == (1.0, 2.0)
    hf.Dataset.from_dict({"s": ["a"], "t": ["c"], "y": [3]}).to_parquet(str(tmp_path / "p.parquet"))
    assert load_pairs(tmp_path / "p.parquet", columns={"sentence1": "s", "sentence2": "t",
                                                       "score": "y"}).gold == (3.0,)


def test_datasets_kit_xnli_languages_pool_into_one_set():
    """Issue 17: 24 pairs per language cannot beat chance; the pool of 15 languages can."""
    from embedgate.quality.datasets import load_pooled_languages
    data = load_pooled_languages(ROOT / "fixtures" / "datasets" / "xnli")
    languages = {i.split(":")[0] for i in data.item_ids}
    assert len(languages) == 15 and len(data) == 360 and sum(data.gold) == 180
    assert data.notes == ("180 rows dropped by the label map (e.g. neutral)",)


def test_datasets_kit_xnli_fixture_is_parallel():
    folder = ROOT / "fixtures" / "datasets" / "xnli"
    data = load_parallel_crosslingual(folder)
    assert len({i.split(":")[0] for i in data.item_ids}) == 14
    assert set(data.gold) == {0.0, 1.0}


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"real data not present at {SHARED}")
def test_datasets_read_the_real_dev_splits():
    atec = load_pairs(SHARED / "atec" / "validation.tsv", columns={"score": "label"})
    assert len(atec) == 20000 and set(atec.gold) == {0.0, 1.0}
    xnli = load_pairs(SHARED / "xnli_dev" / "dev.de.tsv", format="xnli")
    assert len(xnli) == 2490 * 2 // 3 and "dropped" in xnli.notes[0]
    cosqa = load_retrieval(SHARED / "cosqa_dev" / "dev_pairs.jsonl", format="code_pairs")
    assert 0 < len(cosqa) <= len(cosqa.queries) and len(cosqa.corpus) > 100
    pawsx = load_pairs(SHARED / "pawsx_dev" / "dev.fr.tsv", columns={"score": "label"})
    assert len(pawsx) == 2000
