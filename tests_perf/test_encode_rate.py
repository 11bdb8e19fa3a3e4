"""The kit's end-to-end encode rate keeps up with sentence-transformers in process.

Same machine, same model weights, same sentences (the kit's STS set), both measured in one
benchmark run; the ratio of best rounds is stored in extra_info as encode_rate_ratio and must
reach ENCODE_RATE_MIN_RATIO.
"""

import pytest

from embedgate.perf import encode_rate
from embedgate.plugin import encode_client_args
from embedgate.plugin.perf import CORPUS
from embedgate.perf.runner import missing_figures
from embedgate.perf.scenarios import ENCODE_RATE_MIN_RATIO, ENCODE_RATE_ROUNDS
from embedgate.perf.workload import sentences_from_tsv


@pytest.mark.perf
def test_encode_rate_keeps_up_with_in_process_sentence_transformers(
        benchmark, perf_session, perf_record, model_profile, embedgate_settings):
    pytest.importorskip("sentence_transformers")
    weights = model_profile.local_model_path(embedgate_settings.cache_dir)
    if not weights:
        pytest.skip(f"profile {model_profile.name!r} has no local weights for the in-process "
                    f"reference")
    sentences = sentences_from_tsv(CORPUS)
    reference, about = encode_rate.reference_encoder(
        weights, max_tokens=model_profile.max_tokens, normalize=model_profile.normalize)
    client, transport = encode_rate.timed_kit_client(
        perf_session.server.base_url, perf_session.server.served_name,
        api_key=embedgate_settings.api_key, **encode_client_args(embedgate_settings))
    benchmark.group = "encode_rate"
    sampler = perf_session.sampler().start()
    try:
        with client:
            figures = encode_rate.compare(benchmark, kit=client.embed, reference=reference,
                                          sentences=sentences, rounds=ENCODE_RATE_ROUNDS,
                                          server_pids=perf_session.tree.pids(),
                                          request_latencies=transport.latencies_s)
    finally:
        memory = sampler.stop()
    figures.update(scenario="encode_rate", group="encode_rate", **about, **memory,
                   **perf_session.common(), kit_batch_size=client.batch_size,
                   kit_concurrency=client.concurrency, kit_encoding_format=client.encoding_format)
    benchmark.extra_info.update(figures)
    perf_record("encode_rate", figures)
    assert missing_figures(figures) == []
    assert figures["min_cosine_kit_vs_reference"] > 0.99, "kit and reference disagree"
    assert figures["encode_rate_ratio"] >= ENCODE_RATE_MIN_RATIO, (
        f"kit {figures['kit_sentences_per_s_best']:.1f} sentences/s (best round) is "
        f"{figures['encode_rate_ratio']:.2f} of in-process sentence-transformers "
        f"({figures['reference_sentences_per_s_best']:.1f}/s); needs >= {ENCODE_RATE_MIN_RATIO}")
