"""The run directory of a search: resolved config, checkpoints, logs and results.

A rerun on the same directory resumes; a directory holding another search is refused before
anything in it is touched.
"""

from __future__ import annotations

import os
from typing import Any

from tfnas.errors import TfnasError
from tfnas.io import check_output_path, read_json, remove_stale_temp_files, write_json

# Flags that change how a run is executed, not what it computes: they may differ on resume
# (shared_trace: the same draws and updates either way, tests/test_engine.py).
RUN_CONTROL = frozenset({"model_dir", "strategy", "tpu", "checkpoint_every",
                         "checkpoint_secs", "data_dir", "shared_trace", "cache"})


# Everything a search writes in DIR (workers' own files go under hidden .workerN/). Found in
# a DIR without config.json, they belong to something else that a search would overwrite.
OUTPUTS = frozenset({"config.json", "state.json", "arch.json", "arch_probs.png",
                     "proposals.json", "vital_supernet.weights.h5", "supernet.weights.h5",
                     "theta.npy", "checkpoints", "tensorboard"})


class RunDir:
    def __init__(self, path: str):
        self.path = path

    def file(self, name: str) -> str:
        """DIR/name for one of OUTPUTS, or for a path under a hidden (worker's) directory."""
        if name.split(os.sep)[0] not in OUTPUTS and not name.startswith("."):
            raise ValueError(f"{name!r} is not a run-directory output; add it to OUTPUTS")
        return os.path.join(self.path, name)

    @property
    def config_path(self) -> str:
        return self.file("config.json")

    @property
    def checkpoint_dir(self) -> str:
        return self.file("checkpoints")

    @property
    def tensorboard_dir(self) -> str:
        return self.file("tensorboard")

    def check_writable(self) -> None:
        """TfnasError when the directory cannot be made: it is a file, or under one."""
        if os.path.isfile(self.path):
            raise TfnasError(f"--model_dir {self.path} is a file")
        if os.path.isdir(self.config_path):
            raise TfnasError(f"--model_dir {self.path} holds a directory named config.json; "
                             "it was not made by tfnas.search")
        check_output_path(self.config_path, "--model_dir")

    def existing_config(self) -> dict[str, Any] | None:
        """The config.json of the search this directory holds, or None for a new directory
        (other files, e.g. a log the user tees there, are left alone). Files a search writes
        but no config.json (a lone arch.json, another tool's checkpoints/) are refused: the
        search would overwrite them."""
        if not os.path.exists(self.config_path):
            taken = sorted(OUTPUTS & set(os.listdir(self.path))) \
                if os.path.isdir(self.path) else []
            if taken:
                raise TfnasError(f"--model_dir {self.path} holds {', '.join(taken)} but no "
                                 "config.json of a search to resume; a search would overwrite "
                                 "them: use another directory")
            return None
        try:
            config = read_json(self.config_path, "run config")
        except TfnasError as e:
            raise TfnasError(f"{e}; use another --model_dir") from None
        if not isinstance(config, dict) or not isinstance(config.get("flags", {}), dict):
            raise TfnasError(f"run config {self.config_path} is not a tfnas.search config; "
                             "use another --model_dir")
        return config

    def check_resumable(self, new_flags: dict[str, Any]) -> bool:
        """Whether the directory holds a search with exactly `new_flags` (run controls aside)
        to resume: False for a new directory; a directory holding another space's search or
        other settings is refused. Reads only, so it runs before TensorFlow loads."""
        old = self.existing_config()
        if old is None:
            return False
        old_flags = old.get("flags", {})
        if old_flags.get("space") != new_flags.get("space"):
            raise TfnasError(
                f"{self.path} holds a search of space {old_flags.get('space')!r}, not "
                f"{new_flags.get('space')!r}; use another --model_dir")
        differing = sorted(k for k in set(old_flags) | set(new_flags)
                           if k not in RUN_CONTROL and old_flags.get(k) != new_flags.get(k))
        if differing:
            def setting(flags: dict[str, Any], key: str) -> str:
                return repr(flags[key]) if key in flags else "default"  # recorded when set

            shown = ", ".join(f"{k}={setting(old_flags, k)} (now {setting(new_flags, k)})"
                              for k in differing[:4])
            raise TfnasError(f"{self.path} holds a search with other settings: {shown}; rerun "
                             "with the same flags to resume, or use another --model_dir")
        return True

    def claim(self, config: dict[str, Any]) -> bool:
        """Checks that the directory is new or holds this same search; returns True to resume.

        Writes config.json for a new run. Never modifies a directory holding another search.
        """
        if not self.check_resumable(config["flags"]):
            self.check_writable()
            write_json(self.config_path, config)
            return False
        # A kill mid-write leaves atomic_path's temp file (a supernet's is megabytes).
        remove_stale_temp_files(self.path, OUTPUTS)
        return True
