"""MTEB benchmarks by name (issue #11): definitions from the mteb package, data from a mirror,
the Hugging Face cache or the hub, and a clear failure when the data is nowhere.

The mirror is built at test time from ../shared/data (tests/shared_mirror.py); its loaded data
is checked against mteb's own descriptive statistics of the same split, which is how the tests
know that mteb's transform (XNLI's stratified subsample) ran on the same rows MTEB scored.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("mteb")

import shared_mirror  # noqa: E402
from embedgate.cli import main as cli_main  # noqa: E402
from embedgate.quality import mirror  # noqa: E402
from embedgate.quality.benchmarks import (BenchmarkData, BenchmarkError, Selection,  # noqa: E402
                                          parse_selection, resolve_benchmarks, selections_from)
from embedgate.quality.datasets import DatasetError  # noqa: E402
from embedgate.quality.mirror import BenchmarkDataMissing, DataLocator  # noqa: E402

needs_shared = pytest.mark.skipif(not shared_mirror.SHARED.is_dir(),
                                  reason=f"real data not present at {shared_mirror.SHARED} "
                                         f"(set EMBEDGATE_SHARED_DATA)")
NAMED = ("STSBenchmark", "STSB", "STS12", "ATEC", "AFQMC", "BQ", "LCQMC", "PAWSX", "XNLI",
         "CosQA", "SciFact", "CodeSearchNetRetrieval")


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    if not shared_mirror.SHARED.is_dir():
        pytest.skip(f"real data not present at {shared_mirror.SHARED}")
    return shared_mirror.build(tmp_path_factory.mktemp("mirror"), ("ATEC", "AFQMC", "PAWSX",
                                                                   "XNLI", "CosQA"))


def data_for(root: Path | None, tmp_path: Path, **kwargs) -> BenchmarkData:
    return BenchmarkData(DataLocator(mirror=root, cache_dirs=kwargs.pop("cache_dirs", ()),
                                     **kwargs), datasets_cache=tmp_path / "ds")


def test_benchmarks_selection_parses_name_split_and_subsets():
    assert parse_selection("ATEC") == Selection("ATEC")
    assert parse_selection("XNLI:validation:en,zh") == Selection("XNLI", ("validation",),
                                                                  ("en", "zh"))
    assert parse_selection("ATEC:validation,test") == Selection("ATEC", ("validation", "test"))
    for bad in ("", ":test", "A:b:c:d"):
        with pytest.raises(BenchmarkError, match="write NAME"):
            parse_selection(bad)


def test_benchmarks_every_named_task_resolves_from_mteb(tmp_path):
    specs = resolve_benchmarks([Selection(n) for n in NAMED], data_for(None, tmp_path))
    kinds = {s.task_name: (s.kind, s.mteb_main_score, s.main_metric) for s in specs}
    assert kinds["ATEC"] == ("sts", "cosine_spearman", "spearman")
    assert kinds["XNLI"] == ("pair_classification", "max_ap", "max_ap")
    assert kinds["SciFact"] == ("retrieval", "ndcg_at_10", "ndcg_at_10")
    assert set(kinds) == set(NAMED)
    names = [s.name for s in specs]
    assert "ATEC/validation/default" in names and "ATEC/test/default" in names
    assert "XNLI/validation/sw" in names and "CodeSearchNetRetrieval/test/go" in names
    for task, (dataset_id, revision) in shared_mirror.PINS.items():
        spec = next(s for s in specs if s.task_name == task)
        assert (spec.dataset_id, spec.revision) == (dataset_id, revision), task
    scifact = next(s for s in specs if s.task_name == "SciFact")
    assert scifact.instruction.startswith("Given a scientific claim")  # mteb's task prompt


def test_benchmarks_languages_select_subsets(tmp_path):
    specs = resolve_benchmarks([parse_selection("XNLI:validation:deu,zh")],
                               data_for(None, tmp_path))
    assert [s.name for s in specs] == ["XNLI/validation/de", "XNLI/validation/zh"]


@pytest.mark.parametrize("entry, message", [
    ("ATECX", "Did you mean"),
    ("ATEC:train", "not among mteb's eval splits ['validation', 'test']"),
    ("XNLI:validation:xx", "'xx' is neither a subset"),
    ("Banking77Classification", "is an mteb Classification task"),
])
def test_benchmarks_bad_selection_says_why(entry, message, tmp_path):
    with pytest.raises(BenchmarkError, match=message.replace("[", r"\[").replace("(", r"\(")):
        resolve_benchmarks([parse_selection(entry)], data_for(None, tmp_path))


def test_benchmarks_profile_keyword_takes_published_splits_and_notes_the_rest(tmp_path):
    published = ["ATEC/validation/default", "SciFact/train/default"]
    data = data_for(None, tmp_path)
    specs = resolve_benchmarks(selections_from(["profile"], published), data)
    assert [s.name for s in specs] == ["ATEC/validation/default"]
    assert data.notes and "SciFact/train/default not run" in data.notes[0]
    assert selections_from(["none"], published) == []


@needs_shared
def test_benchmarks_mirror_gives_the_rows_mteb_scored(shared, tmp_path):
    """Counts and character totals equal mteb's descriptive statistics of each split: XNLI's
    stratified subsample (1365 of 2490 pairs, neutral dropped) is mteb's own, run on the same
    rows. Where the shared copy's text differs by a few characters (PAWS-X, 4 XNLI languages),
    the check says so instead of passing it silently."""
    data = data_for(shared, tmp_path)
    specs = resolve_benchmarks([parse_selection(s) for s in (
        "ATEC:validation", "AFQMC", "PAWSX",
        "XNLI:validation:" + ",".join(shared_mirror.XNLI_DEV_LANGS))], data)
    sizes = {s.name: len(s.load()) for s in specs}
    assert sizes["ATEC/validation/default"] == 20000 and sizes["AFQMC/validation/default"] == 4316
    assert all(sizes[f"XNLI/validation/{lang}"] == 1365 for lang in shared_mirror.XNLI_DEV_LANGS)
    exact = {n for n, d in data.differences.items() if not d}
    assert {"ATEC/validation/default", "AFQMC/validation/default", "XNLI/validation/en",
            "XNLI/validation/zh", "XNLI/validation/de", "XNLI/validation/sw"} <= exact
    assert data.differences["PAWSX/test/default"] == [
        "text1 characters 86464 here, 86486 in mteb's statistics",
        "text2 characters 86548 here, 86564 in mteb's statistics"]
    pawsx = next(s for s in specs if s.task_name == "PAWSX")
    assert "differs from what mteb describes" in pawsx.load().notes[0]
    assert pawsx.details()["benchmark"]["data_from"] == "mirror"
    xnli = next(s for s in specs if s.name == "XNLI/validation/en").load()
    assert set(xnli.gold) == {0.0, 1.0} and sum(xnli.gold) == 682  # entailment 1, contradiction 0


@needs_shared
def test_benchmarks_retrieval_from_mirror_is_mteb_corpus_queries_and_qrels(shared, tmp_path):
    spec, = resolve_benchmarks([parse_selection("CosQA")], data_for(shared, tmp_path))
    data = spec.load()
    raw = shared_mirror.cosqa_long()
    assert len(data.corpus) == len(raw["corpus"]) and len(data.qrels) == len(raw["queries"])
    assert data.corpus["c0"] == raw["corpus"]["c0"]  # title "" + text, stripped, as mteb's
    assert list(data.qrels) == sorted(data.qrels)  # a stable order for per-query items
    assert any("num_documents 552 here, 20604 in mteb's statistics" in n for n in data.notes)


@needs_shared
def test_benchmarks_hf_cache_is_read_when_no_mirror_has_it(tmp_path):
    hub = tmp_path / "hf" / "hub"
    shared_mirror.build(hub, ("AFQMC",), layout=lambda root, i, r: shared_mirror.hub_cache_layout(
        root, i, r))
    data = data_for(tmp_path / "empty-mirror", tmp_path, cache_dirs=(hub,))
    spec, = resolve_benchmarks([parse_selection("AFQMC")], data)
    assert len(spec.load()) == 4316
    assert data.origin("AFQMC").origin == "hf-cache"
    assert data.origin("AFQMC").path == hub / "datasets--C-MTEB--AFQMC" / "snapshots" / \
        shared_mirror.PINS["AFQMC"][1]


def test_benchmarks_missing_data_names_id_revision_and_download_command(tmp_path):
    data = data_for(tmp_path / "mirror", tmp_path, cache_dirs=(tmp_path / "hub",))
    spec = resolve_benchmarks([parse_selection("ATEC:validation")], data)[0]
    with pytest.raises(BenchmarkDataMissing) as err:
        spec.load()
    message = str(err.value)
    for part in ("C-MTEB/ATEC", "0f319b1142f28d00e055a6770f3f726ae9b7d865",
                 f"no folder {tmp_path / 'mirror' / 'C-MTEB' / 'ATEC'}",
                 "HF_HUB_OFFLINE is set", "`embedgate benchmarks download DIR ATEC`",
                 "--embedgate-benchmark-mirror DIR"):
        assert part in message, part
    with pytest.raises(BenchmarkDataMissing):  # the same answer again, without a second search
        spec.load()


def test_benchmarks_unreachable_hub_is_tried_once(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    calls = []

    def unreachable(dataset_id, revision, **kwargs):
        calls.append(dataset_id)
        raise ConnectionError("Name or service not known")
    monkeypatch.setattr(mirror, "fetch_snapshot", unreachable)
    locator = DataLocator(mirror=None, cache_dirs=(tmp_path / "hub",))
    for dataset_id in ("C-MTEB/ATEC", "C-MTEB/AFQMC"):
        with pytest.raises(BenchmarkDataMissing, match="Name or service not known"):
            locator.locate(dataset_id, "0" * 40)
    assert calls == ["C-MTEB/ATEC"]


@needs_shared
def test_benchmarks_hub_download_is_used_when_online(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    fetched = []

    def fake_hub(dataset_id, revision, cache_dir=None, local_dir=None):
        fetched.append((dataset_id, revision, cache_dir))
        return shared_mirror.build(tmp_path / "hub-files", ("AFQMC",)) / dataset_id / revision
    monkeypatch.setattr(mirror, "fetch_snapshot", fake_hub)
    data = data_for(None, tmp_path, download_dir=tmp_path / "dl")
    spec, = resolve_benchmarks([parse_selection("AFQMC")], data)
    assert len(spec.load()) == 4316 and data.origin("AFQMC").origin == "hub"
    assert fetched == [("C-MTEB/AFQMC", shared_mirror.PINS["AFQMC"][1], tmp_path / "dl")]


def test_benchmarks_download_command_fetches_each_pinned_revision_once(tmp_path, monkeypatch,
                                                                       capsys):
    import huggingface_hub
    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        Path(kwargs["local_dir"]).mkdir(parents=True, exist_ok=True)
        return str(kwargs["local_dir"])
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    assert cli_main(["benchmarks", "download", str(tmp_path / "m"), "ATEC",
                     "XNLI:validation:en,zh"]) == 0
    assert [c[0] for c in calls] == ["C-MTEB/ATEC", "mteb/xnli"]
    repo, kwargs = calls[0]
    assert kwargs["repo_type"] == "dataset"
    assert kwargs["revision"] == shared_mirror.PINS["ATEC"][1]
    assert kwargs["local_dir"] == tmp_path / "m" / "C-MTEB" / "ATEC" / shared_mirror.PINS["ATEC"][1]
    assert "--embedgate-benchmark-mirror" in capsys.readouterr().out


def test_benchmarks_download_default_covers_every_published_benchmark(tmp_path, monkeypatch):
    import huggingface_hub
    calls = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda repo_id, **kw: calls.append(repo_id) or str(kw["local_dir"]))
    assert cli_main(["benchmarks", "download", str(tmp_path / "m")]) == 0
    assert {"C-MTEB/ATEC", "mteb/xnli", "CoIR-Retrieval/cosqa", "mteb/scifact",
            "mteb/CodeSearchNetRetrieval"} <= set(calls)
    assert len(calls) == len(set(calls))


@needs_shared
def test_benchmarks_partial_mirror_fails_with_the_missing_split(shared, tmp_path):
    spec, = resolve_benchmarks([parse_selection("ATEC:test")], data_for(shared, tmp_path))
    with pytest.raises(DatasetError, match="has no split 'test' \\(it has configs \\['default'\\], "
                                           "splits \\['validation'\\]\\).*"
                                           "embedgate benchmarks download DIR ATEC"):
        spec.load()


@needs_shared
def test_benchmarks_subset_missing_from_the_copy_fails_alone(shared, tmp_path):
    data = data_for(shared, tmp_path)
    bg, en = resolve_benchmarks([parse_selection("XNLI:validation:bg,en")], data)
    assert len(en.load()) == 1365
    with pytest.raises(DatasetError, match="has no subset 'bg' .*'en'.*embedgate benchmarks "
                                           "download DIR XNLI"):
        bg.load()
