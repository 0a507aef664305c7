"""Loading an open_clip CLIP model with its weights, safely and exactly.

Weights come from an open_clip pretrained tag (fetched the way open_clip does, with an
offline switch and a cache folder), from a local file (open_clip checkpoint,
``.safetensors``, or an OpenAI-format state dict), or from random initialisation for
tests.  Files are read without executing code from them (safetensors, or
``torch.load(weights_only=True)``) and copied straight into a float32 model, so a
float32 file keeps its float32 values (open_clip's OpenAI builder would round them
through float16).
"""

from __future__ import annotations

import difflib
import logging
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..resources import package_data_path

LOG = logging.getLogger("mlmp_ros.backbone")

# Keys that OpenAI's TorchScript state dicts carry besides the tensors.
_NON_TENSOR_KEYS = ("input_resolution", "context_length", "vocab_size")
_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


# How to run without downloaded weights: the bundled world model (ROS parameters, then the --set form).
WORLD_HINT = "model:=mlmp-world weights:=world (mlmp-bench: --set model=mlmp-world --set weights=world)"


class WeightsError(RuntimeError):
    """Weights cannot be found, read, or do not fit the model; the message says what to do."""


class ModelNameError(ValueError):
    """The model name is not an open_clip model."""


@dataclass
class LoadedCLIP:
    model: torch.nn.Module  # open_clip CLIP, eval mode, float32
    tokenizer: Any
    name: str
    weights: str  # what was loaded: a tag, a file path, or "random"
    random_weights: bool


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def _register_bundled_configs() -> None:
    import open_clip

    folder = package_data_path("model_configs")
    if folder.is_dir():
        open_clip.add_model_config(folder)


def available_models() -> list[str]:
    import open_clip

    _register_bundled_configs()
    return list(open_clip.list_models())


def check_model_name(name: str) -> None:
    models = available_models()
    if name not in models:
        close = difflib.get_close_matches(name, models, n=4, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ModelNameError(
            f"unknown model '{name}': not an open_clip model name{hint} "
            "(OpenAI CLIP weights need the -quickgelu names, e.g. ViT-B-16-quickgelu)"
        )


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise WeightsError(f"device '{device}' was asked for but CUDA is not available; use device: cpu or auto")
    return dev


def load_clip(
    name: str,
    weights: str = "openai",
    *,
    cache_dir: str | None = None,
    offline: bool = False,
    device: str | torch.device = "cpu",
) -> LoadedCLIP:
    """Build ``name`` with open_clip and load ``weights`` into it (see module docs)."""
    import open_clip

    check_model_name(name)
    weights = weights.strip()
    # open_clip logs "no pretrained weights loaded" for every pretrained=None build; the
    # weights are loaded below, so that message would be wrong here.
    factory_log = logging.getLogger()
    quiet = _DropMessage("No pretrained weights loaded")
    factory_log.addFilter(quiet)
    try:
        model = open_clip.create_model(name, pretrained=None, precision="fp32", device="cpu")
    finally:
        factory_log.removeFilter(quiet)
    random = weights.lower() == "random"
    if random:
        msg = (
            f"RANDOM WEIGHTS: {name} is randomly initialised. Its segmentations are meaningless; "
            "use this for tests only and give real weights (an open_clip tag or a local file) otherwise."
        )
        LOG.warning(msg)
        warnings.warn(msg, stacklevel=2)
        source = "random"
    else:
        path = weights_file(name, weights, cache_dir=cache_dir, offline=offline)
        state = read_state_dict(path)
        load_into(model, state, name=name, source=str(path))
        _warn_activation_mismatch(name, weights)
        source = weights if not Path(weights).expanduser().exists() else str(path)
    model = model.to(resolve_device(str(device)) if not isinstance(device, torch.device) else device).eval()
    tokenizer = open_clip.get_tokenizer(name, cache_dir=cache_dir or None)
    return LoadedCLIP(model=model, tokenizer=tokenizer, name=name, weights=source, random_weights=random)


def _looks_like_path(weights: str) -> bool:
    return os.sep in weights or weights.startswith(("~", ".")) or weights.endswith(_WEIGHT_SUFFIXES)


# Weights shipped inside the package: model name -> {tag: file under mlmp_ros/}.
BUNDLED_WEIGHTS = {"mlmp-world": {"world": ("world", "mlmp-world.safetensors")}}


def weights_file(name: str, weights: str, *, cache_dir: str | None, offline: bool) -> Path:
    """The local file of ``weights`` (bundled with the package, a file, a folder holding one, or an open_clip tag,
    fetched to the cache)."""
    bundled = BUNDLED_WEIGHTS.get(name, {}).get(weights)
    owners = [model for model, tags in BUNDLED_WEIGHTS.items() if weights in tags]
    if bundled is None and owners and not Path(weights).expanduser().exists():
        raise WeightsError(f"the bundled weights '{weights}' belong to model {owners[0]}, not {name}: "
                           f"set model={owners[0]} (or give {name} its own weights)")  # fmt: skip
    if bundled is not None:
        path = package_data_path(*bundled)
        if not path.is_file():
            raise WeightsError(f"the bundled weights '{weights}' of {name} are missing from this installation ({path})")
        return path
    path = Path(weights).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        for cand in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin", "model.safetensors"):
            if (path / cand).is_file():
                return path / cand
        raise WeightsError(f"weights folder {path} holds no open_clip_model.safetensors or open_clip_pytorch_model.bin")
    if _looks_like_path(weights):
        raise WeightsError(f"weights file not found: {path} (give an existing file, an open_clip tag such as 'openai', or 'random' for tests)")
    return _pretrained_file(name, weights, cache_dir=cache_dir, offline=offline)




def _pretrained_file(name: str, tag: str, *, cache_dir: str | None, offline: bool) -> Path:
    from open_clip import pretrained as ocp

    cfg = ocp.get_pretrained_cfg(name, tag)
    if not cfg:
        tags = ocp.list_pretrained_tags_by_model(name)
        raise WeightsError(
            f"'{tag}' is neither a file nor a pretrained tag of {name} "
            f"(its tags: {', '.join(tags) if tags else 'none'})"
        )
    errors: list[str] = []
    hub = cfg.get("hf_hub", "")
    if hub:
        parts = hub.strip("/").split("/")
        repo_id, filename = "/".join(parts[:2]), "/".join(parts[2:])
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        found = _hub_file(repo_id, names, cache_dir=cache_dir, offline=offline, errors=errors)
        if found is not None:
            return found
    url = cfg.get("url", "")
    if url and not hub:  # tags without a hub copy (OpenAI's own URLs serve TorchScript, refused anyway)
        folder = Path(cache_dir or Path.home() / ".cache" / "clip").expanduser()
        target = folder / os.path.basename(url)
        if target.is_file():
            return target
        reason = "" if offline else _reachable(url)
        if reason:
            errors.append(reason)
        elif not offline:
            try:
                return Path(ocp.download_pretrained_from_url(url, cache_dir=str(folder)))
            except Exception as exc:  # noqa: BLE001
                errors.append(f"{url}: {type(exc).__name__}: {exc}")
    where = cache_dir or "the default Hugging Face / ~/.cache/clip caches"
    mode = "offline mode is on and they are not cached" if offline else "they could not be downloaded"
    raise WeightsError(
        f"pretrained weights '{tag}' for {name} are not available: {mode} (cache: {where}). "
        "Download them once where there is internet (the same cache_dir), or give a local file "
        "(open_clip checkpoint, .safetensors, or an OpenAI-format state dict); to run without them, use the "
        f"bundled world model: {WORLD_HINT}. Details: " + " | ".join(errors)
    )


def _reachable(url: str, timeout: float = 3.0) -> str:
    """'' when a TCP connection to ``url``'s host opens within ``timeout``, else the reason."""
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(url)
    try:
        socket.create_connection((parsed.hostname, parsed.port or 443), timeout=timeout).close()
        return ""
    except OSError as exc:
        return f"cannot reach {parsed.hostname}: {exc}"


def _hub_file(repo_id: str, names: list[str], *, cache_dir: str | None, offline: bool, errors: list[str]) -> Path | None:
    """A file of a Hugging Face hub repository: from the cache, else downloaded once."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    for name in names:
        try:
            return Path(hf_hub_download(repo_id, name, cache_dir=cache_dir or None, local_files_only=True))
        except Exception:  # noqa: BLE001 - not cached; try the next name or the network
            pass
    if offline:
        errors.append(f"{repo_id}: not in the cache")
        return None
    reason = _reachable(constants.ENDPOINT)
    if reason:  # fail fast instead of the hub client's minute of retries
        errors.append(reason)
        return None
    for name in names:
        try:
            return Path(hf_hub_download(repo_id, name, cache_dir=cache_dir or None))
        except EntryNotFoundError:
            continue
        except Exception as exc:  # noqa: BLE001
            errors.append(f"{repo_id}/{name}: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
            return None
    errors.append(f"{repo_id}: none of {names}")
    return None


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.split("/", 1)[-1].startswith(("code/", "constants.pkl")) for n in zf.namelist())


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a weights file, read without running code from it."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            data: Any = load_file(str(path), device="cpu")
        except Exception as exc:  # noqa: BLE001
            raise WeightsError(f"{path} is not a readable safetensors file: {exc}") from None
    else:
        if _is_torchscript(path):
            raise WeightsError(
                f"{path} is a TorchScript archive (OpenAI's original download); loading it would compile "
                "code from the file. Use the open_clip tag 'openai' (safetensors from the Hugging Face hub), "
                "or convert it once on a trusted machine: python -c \"import torch, safetensors.torch as s; "
                f"s.save_file(torch.jit.load('{path}').state_dict(), 'weights.safetensors')\""
            )
        try:
            data = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001
            raise WeightsError(
                f"{path} is not a weights file that can be read safely "
                f"(torch.load with weights_only=True refused it: {str(exc).splitlines()[0][:200]})"
            ) from None
    if isinstance(data, dict):
        for key in ("state_dict", "model", "module"):
            if key in data and isinstance(data[key], dict):
                data = data[key]
                break
    if not isinstance(data, dict) or not data:
        raise WeightsError(f"{path} holds no state dict")
    state = {}
    for key, value in data.items():
        if key in _NON_TENSOR_KEYS:
            continue
        if key.startswith("module."):
            key = key[len("module.") :]
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"{path}: entry '{key}' is not a tensor")
        state[key] = value
    return state


def describe_state_dict(state: dict[str, torch.Tensor]) -> str:
    """A short guess of the architecture a CLIP state dict belongs to."""
    conv = state.get("visual.conv1.weight")
    if conv is None:
        return "not an image-tower CLIP ViT state dict (no visual.conv1.weight)"
    width, patch = conv.shape[0], conv.shape[-1]
    layers = len({k.split(".")[3] for k in state if k.startswith("visual.transformer.resblocks.")})
    embed = state["visual.proj"].shape[1] if "visual.proj" in state else "?"
    size = {768: "B", 1024: "L", 1280: "H"}.get(width, f"width {width}")
    return f"a ViT-{size}/{patch} image tower ({layers} blocks, width {width}, patch {patch}, embedding {embed})"


def load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], *, name: str, source: str) -> None:
    """Copy ``state`` into ``model`` (exact values, model dtype), or explain the mismatch."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or wrong:
        details = []
        if wrong:
            details.append(f"{len(wrong)} shapes differ (first: {wrong[0]})")
        if missing:
            details.append(f"{len(missing)} missing (first: {missing[0]})")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected (first: {unexpected[0]})")
        raise WeightsError(
            f"{source} does not fit {name}: the file looks like {describe_state_dict(state)}; "
            + "; ".join(details)
        )
    with torch.no_grad():
        for key, tensor in own.items():
            tensor.copy_(state[key])


def _warn_activation_mismatch(name: str, weights: str) -> None:
    if weights == "openai" and "quickgelu" not in name.lower():
        LOG.warning("OpenAI weights were trained with QuickGELU; %s uses GELU. Use %s-quickgelu.", name, name)
