"""The bundled default model: loads from the package, gets the obvious cases right, keeps its accuracy."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from batchscore.interfaces.cli import main
from batchscore.interfaces.model_commands import predict_texts
from batchscore.model.bundle import default_bundle_path, load_bundle
from batchscore.training.evaluate import expected_calibration_error
from tests.helpers import ROOT

IMDB_TEST = ROOT.parent / "shared" / "data" / "imdb" / "test.parquet"


@pytest.fixture(scope="module")
def bundle():
    return load_bundle()


def test_default_bundle_ships_in_the_package(bundle):
    assert default_bundle_path().is_dir()
    assert bundle.model.num_layers == 2 and bundle.model.hidden == 100 and bundle.model.embed_dim == 50
    size = sum(p.stat().st_size for p in default_bundle_path().iterdir())
    assert size < 15 * 2**20
    for key in ("command", "seed", "train_data", "embeddings", "valid_metrics", "test_metrics"):
        assert key in bundle.card


def test_the_two_sentences_the_textbook_model_gets_wrong(bundle):
    great, bad = predict_texts(["this movie is so great", "this movie is so bad"], bundle)
    assert great["label"] == "positive"
    assert bad["label"] == "negative"


@pytest.mark.slow
def test_readme_command_on_the_sample_data(tmp_path):
    source = tmp_path / "reviews.parquet"
    source.write_bytes((ROOT / "sample_data" / "reviews.parquet").read_bytes())
    result = CliRunner().invoke(main, ["run", str(source), "--no-progress"])
    assert result.exit_code == 0, result.output
    scored = pq.read_table(tmp_path / "reviews.scored.parquet")
    agree = np.array(scored.column("label").to_pylist()) == np.array(scored.column("expected").to_pylist())
    assert agree.mean() > 0.9  # the synthetic reviews are unambiguous


@pytest.mark.slow
@pytest.mark.imdb
@pytest.mark.skipif(not IMDB_TEST.exists(), reason="needs ../shared/data/imdb")
def test_imdb_test_accuracy_and_ece_from_run_output_match_the_model_card(bundle, tmp_path):
    """All 25,000 test reviews through `batchscore run` (a few minutes): the card's figures are the
    figures a user gets from the shipped files, not those of a model before rounding or calibration."""
    output = tmp_path / "test.scored.parquet"
    result = CliRunner().invoke(main, ["run", str(IMDB_TEST), "-o", str(output), "--no-progress"])
    assert result.exit_code == 0, result.output
    scored = pq.read_table(output, columns=["prob_positive", "label"])
    truth = pq.read_table(IMDB_TEST, columns=["label"]).column("label").to_numpy()
    probs = scored.column("prob_positive").to_numpy()
    predicted = np.array(scored.column("label").to_pylist()) == "positive"
    card = bundle.card["test_metrics"]
    assert (predicted == truth.astype(bool)).mean() == pytest.approx(card["accuracy"], abs=0.002)
    assert expected_calibration_error(probs, truth) == pytest.approx(card["ece"], abs=0.002)
    assert card["accuracy"] >= 0.905


def test_info_reads_as_text_and_says_where_the_training_files_come_from(bundle):
    from batchscore.interfaces.model_commands import model_card_text

    text = model_card_text(bundle)
    assert "{" not in text  # no raw JSON blobs
    assert "test       accuracy 0.9085, ROC-AUC 0.9709" in text
    assert "python -m benchmarks.studies.film_split" in text
