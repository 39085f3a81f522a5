"""The GPU (cuDNN) forward path, checked on CPU through jax.experimental.rnn's reference of the same call."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from jax.experimental import rnn

from batchscore.inference.device import recurrence_path
from batchscore.model.bilstm import ModelConfig
from batchscore.model.cudnn import cudnn_forward_logits, device_params, pack_weights
from batchscore.model.network import init_params
from batchscore.model.scoring_pass import scoring_logits, scoring_weights


@pytest.mark.slow
@pytest.mark.parametrize("pooling", [(), ("max", "mean")])
def test_packed_weights_unpack_to_ours(pooling):
    config = ModelConfig(vocab_size=30, embed_dim=6, hidden=5, num_layers=2, pooling=pooling)
    params = init_params(config, 0)
    w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(
        pack_weights(config, params), input_size=6, hidden_size=5, num_layers=2, bidirectional=True
    )
    for layer in range(2):
        p = params[f"lstm_{layer}"]
        for direction in range(2):
            pseudo = 2 * layer + direction  # forward-0, reverse-0, forward-1, reverse-1
            np.testing.assert_array_equal(w_ih[pseudo], np.asarray(p["w_input"][direction]).T)
            np.testing.assert_array_equal(w_hh[pseudo], np.asarray(p["w_hidden"][direction]).T)
            np.testing.assert_array_equal(b_ih[pseudo], p["bias"][direction])
            assert not np.any(b_hh[pseudo])
    assert w_ih[2].shape == (20, 10)  # layer 2 reads [forward; backward]


@pytest.mark.parametrize("pooling", [(), ("max", "mean")])
def test_packed_stack_matches_the_scan_path_on_ragged_rows(pooling):
    config = ModelConfig(vocab_size=40, embed_dim=6, hidden=5, num_layers=2, pooling=pooling)
    params = init_params(config, 3)
    rng = np.random.default_rng(0)
    ids = rng.integers(2, 40, size=(6, 11)).astype(np.int32)
    lengths = np.array([1, 3, 11, 7, 2, 0], np.int32)  # ragged, with padding; 0 is clamped to 1
    scan = scoring_logits(config, scoring_weights(params), ids, lengths)
    packed = cudnn_forward_logits(config, device_params(config, params), ids, lengths, "reference")
    np.testing.assert_allclose(np.asarray(packed), np.asarray(scan), atol=1e-5)


def test_cpu_uses_the_scan_path(monkeypatch):
    cpu = jax.devices("cpu")[0]
    assert recurrence_path(cpu) == "scan"  # rnn.lstm has no CPU kernel

    class FakeGpu:
        platform = "gpu"

    assert recurrence_path(FakeGpu()) == "cudnn"
    monkeypatch.setenv("BATCHSCORE_GPU_RNN", "scan")
    assert recurrence_path(FakeGpu()) == "scan"
