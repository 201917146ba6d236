"""What libraries print while ``harness run`` works: hidden, unless ``--verbose``.

transformers' "Loading weights" bars, the hub's download bars, ``FutureWarning``\\s such as
``is_gradient_checkpointing``'s and library log records say nothing a user of the harness can
act on, and they break up its own progress and results. By default they are dropped; the
harness's own warnings (an API request given up, for one) still reach standard error. With
``--verbose`` everything goes to standard error as it comes: library log records at INFO,
warnings as log lines, the libraries' own progress bars. Standard output is never touched, so
``--json`` stays machine-clean either way.

Environment variables do most of it (read when transformers and huggingface_hub are first
imported, which ``harness run`` does only later); a library already imported is set directly.
"""
from __future__ import annotations

import logging
import os
import sys

LIBRARY_LOGGERS = ("transformers", "peft", "torch", "accelerate", "sentence_transformers", "huggingface_hub",
                   "datasets", "bm25s", "httpx", "urllib3", "filelock", "vllm")
_HANDLER_NAME = "harness-stderr"


def route_library_output(verbose: bool = False) -> None:
    """Drop library bars, warnings and logs (default), or show them all on standard error."""
    if verbose:
        _show_everything()
        return
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["TRANSFORMERS_VERBOSITY"] = "error"
    os.environ["TRANSFORMERS_NO_ADVISORY_WARNINGS"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.captureWarnings(True)  # warnings.warn(...) becomes a record of "py.warnings", dropped below
    quiet = logging.getLogger("py.warnings")
    quiet.handlers[:] = [logging.NullHandler()]
    quiet.propagate = False
    for name in LIBRARY_LOGGERS:
        lib = logging.getLogger(name)
        lib.setLevel(logging.ERROR)
    logging.getLogger().addHandler(logging.NullHandler())  # no "last resort" printing of library records
    _own_warnings_to_stderr()
    if "transformers" in sys.modules:  # imported already: its environment variables were read
        from transformers.utils import logging as tf_logging

        tf_logging.set_verbosity_error()
        tf_logging.disable_progress_bar()


def _show_everything() -> None:
    os.environ.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)
    os.environ["TRANSFORMERS_VERBOSITY"] = "info"
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)


def _own_warnings_to_stderr() -> None:
    """The harness's own log records of WARNING and above still print (once, whatever the root has)."""
    own = logging.getLogger("harness")
    if not any(h.get_name() == _HANDLER_NAME for h in own.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name(_HANDLER_NAME)
        handler.setLevel(logging.WARNING)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        own.addHandler(handler)
        own.propagate = False
