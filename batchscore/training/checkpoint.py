"""Per-epoch training state on disk, committed atomically (state.json is the commit point)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from safetensors.numpy import load_file, save

from batchscore.io.safe_files import make_private_dir, require_own_directory, write_bytes_atomically
from batchscore.io.writers import step_done
from batchscore.model.bilstm import flatten_params, unflatten_params
from batchscore.training.config import TrainState


class Checkpoint:
    """Per-epoch state in a directory: current and best params, optimiser state, progress."""

    def __init__(self, directory: Path):
        self.directory = directory

    def exists(self) -> bool:
        return (self.directory / "state.json").is_file()

    TREES = ("params", "ema", "best")

    def _write(self, name: str, data: bytes) -> None:
        """One file of the checkpoint, whole or not at all, in a folder of the running user's own: a
        resumed training loads what is here, so nobody else may be able to put anything in it."""
        make_private_dir(str(self.directory), "the checkpoint folder")
        write_bytes_atomically(str(self.directory / name), data)

    def save(self, trees: dict[str, dict], opt_state, state: TrainState, meta: dict) -> None:
        """`trees` holds the current, averaged and best parameters (see TREES)."""
        arrays = {
            f"{tree}/{k}": np.asarray(v)
            for tree in self.TREES
            for k, v in flatten_params(trees[tree]).items()
        }
        leaves = jax.tree_util.tree_leaves(opt_state)
        arrays.update({f"opt/{i}": np.asarray(leaf) for i, leaf in enumerate(leaves)})
        # Arrays go to a file named by the step; state.json names that file and is replaced atomically,
        # so it is the single commit point: a crash before it leaves the previous checkpoint whole.
        name = f"arrays-{state.step:09d}.safetensors"
        self._write(name, save(arrays))
        step_done("arrays written")  # on disk, not yet committed: state.json is the commit point
        payload = {"state": asdict(state), "meta": meta, "arrays": name}
        self._write("state.json", json.dumps(payload, indent=1).encode("utf-8"))
        for old in self.directory.glob("arrays*.safetensors"):  # superseded checkpoints
            if old.name != name:
                old.unlink()

    def save_epoch_weights(self, epoch: int, params: dict) -> None:
        """The weights evaluated after `epoch`, kept for averaging; written before that epoch's commit,
        so every committed epoch has its file (a rerun of an uncommitted epoch rewrites it)."""
        self._write(
            f"epoch-{epoch:03d}.safetensors",
            save({k: np.asarray(v) for k, v in flatten_params(params).items()}),
        )

    def epoch_weights(self, epoch: int) -> dict:
        arrays = load_file(str(self.directory / f"epoch-{epoch:03d}.safetensors"))
        return unflatten_params({k: jnp.asarray(v) for k, v in arrays.items()})

    def load(self, opt_template) -> tuple[dict[str, dict], object, TrainState, dict]:
        require_own_directory(str(self.directory), "the checkpoint folder")
        payload = json.loads((self.directory / "state.json").read_text())
        arrays = load_file(str(self.directory / payload.get("arrays", "arrays.safetensors")))
        trees = {
            tree: unflatten_params(
                {k[len(tree) + 1 :]: jnp.asarray(v) for k, v in arrays.items() if k.startswith(f"{tree}/")}
            )
            for tree in self.TREES
        }
        if not trees["ema"]:  # checkpoints from before weight averaging
            trees["ema"] = trees["params"]
        treedef = jax.tree_util.tree_structure(opt_template)
        n = treedef.num_leaves
        opt_state = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(arrays[f"opt/{i}"]) for i in range(n)])
        return trees, opt_state, TrainState(**payload["state"]), payload["meta"]
