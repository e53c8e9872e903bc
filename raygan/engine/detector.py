"""A trained run as a detector: score new images with its checkpoint, or export its scoring model.

A checkpoint written by the epoch loop holds the resolved config, the networks, the run's
preprocessing (image size, channels, the data set's pixel scale) and the decision threshold chosen
on that run's validation split (`raygan.engine.evaluation.choose_threshold`). Inputs go through the run's
own preprocessing: resized to its image size (bilinear), converted to its channels and scaled to
[-1, 1]. Plain PyTorch, no Ray.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from raygan.core.errors import RayganError
from raygan.data.datasets import to_model_input
from raygan.data.image_folder import IMAGE_SUFFIXES, read_images
from raygan.engine.checkpoints import load_checkpoint
from raygan.methods import Method, load_method

ARRAY_SUFFIX = ".npy"
EXPORT_METADATA = "raygan.json"  # extra file inside an exported .pt2


@dataclass
class Inputs:
    """Images in model input form (N×C×S×S in [-1, 1]) and a name per image for the CSV."""

    names: list[str]
    x: torch.Tensor


class Detector:
    """The networks of a checkpoint in eval mode, with the run's preprocessing and threshold."""

    def __init__(self, method: Method, preprocessing: dict, threshold: dict, source: str) -> None:
        self.method = method
        self.preprocessing = preprocessing
        self.threshold = threshold
        self.source = source
        method.eval_mode()

    @classmethod
    def from_checkpoint(cls, path: Path) -> "Detector":
        if not path.is_file():
            raise RayganError(f"checkpoint {path} does not exist (a run's checkpoints/selected.pt or last.pt)")
        saved = load_checkpoint(path)
        missing = [key for key in ("threshold", "preprocessing") if key not in saved]
        if missing:
            raise RayganError(
                f"checkpoint {path} has no {' and no '.join(missing)}: it was written before raygan stored the "
                f"decision threshold; train the run again to score with it"
            )
        prep = saved["preprocessing"]
        return cls(load_method(saved, prep["channels"], prep["image_size"]), prep, saved["threshold"], str(path))

    # --- inputs ---------------------------------------------------------------------------

    def load_inputs(self, paths: list[Path]) -> Inputs:
        """PNG/JPEG files, folders of them (and of .npy files), and .npy arrays, in argument order."""
        names: list[str] = []
        batches: list[torch.Tensor] = []
        for path in paths:
            if path.is_dir():
                files = sorted(
                    p for p in path.rglob("*")
                    if p.is_file() and not p.name.startswith(".")
                    and (p.suffix.lower() in IMAGE_SUFFIXES or p.suffix.lower() == ARRAY_SUFFIX)
                )
                if not files:
                    raise RayganError(f"folder {path} holds no images (.png, .jpg, ...) or .npy arrays")
            elif path.is_file():
                files = [path]
            else:
                raise RayganError(f"input {path} does not exist")
            for file in files:
                if file.suffix.lower() == ARRAY_SUFFIX:
                    x = self._array(file)
                    names += [f"{file}[{i}]" for i in range(len(x))]
                elif file.suffix.lower() in IMAGE_SUFFIXES:
                    x = self._image(file)
                    names.append(str(file))
                else:
                    raise RayganError(
                        f"input {file}: not an image ({', '.join(sorted(IMAGE_SUFFIXES))}) or a .npy array"
                    )
                batches.append(x)
        if not batches:
            raise RayganError("no input images")
        return Inputs(names, torch.cat(batches))

    def _image(self, path: Path) -> torch.Tensor:
        from PIL import Image, UnidentifiedImageError

        channels, size = self.preprocessing["channels"], self.preprocessing["image_size"]
        mode = "L" if channels == 1 else "RGB"
        if self.preprocessing["dataset"] == "image_folder":
            # decoded and resized exactly as the run's training images were, at load time with PIL
            return to_model_input(read_images([path], mode, size), 255, size)
        try:
            with Image.open(path) as img:
                pixels = np.array(img.convert(mode), dtype=np.uint8)
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise RayganError(f"cannot read image {path}: {exc}") from None
        pixels = pixels[None, None] if channels == 1 else pixels.transpose(2, 0, 1)[None]
        return to_model_input(pixels, 255, size)  # 8-bit image files: 255 is white

    def _array(self, path: Path) -> torch.Tensor:
        channels, size = self.preprocessing["channels"], self.preprocessing["image_size"]
        max_value = self.preprocessing["max_value"]
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise RayganError(f"cannot read array {path}: {exc}") from None
        expected = "N×H×W" if channels == 1 else f"N×H×W×{channels}"
        if array.ndim == 3 and channels == 1:
            array = array[:, None]
        elif array.ndim == 4 and array.shape[-1] == channels:
            array = array.transpose(0, 3, 1, 2)
        else:
            raise RayganError(
                f"array {path} has shape {'×'.join(map(str, array.shape))}; this detector takes {expected} "
                f"({channels} channel{'s' if channels > 1 else ''})"
            )
        if len(array) == 0 or min(array.shape[2:]) < 1:
            raise RayganError(f"array {path} holds no images (shape {'×'.join(map(str, array.shape))})")
        if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
            raise RayganError(f"array {path} has dtype {array.dtype}; expected integer or float pixel values")
        array = array.astype(np.float32)
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > max_value:
            raise RayganError(
                f"array {path} has values in [{array.min():g}, {array.max():g}]; this detector's data set stores "
                f"pixels in 0..{max_value} and arrays must use that scale"
            )
        return to_model_input(array, max_value, size)

    # --- scoring ------------------------------------------------------------------------------

    def score(self, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        return self.method.score(x, batch_size)

    def is_anomalous(self, scores: torch.Tensor) -> torch.Tensor:
        return scores >= self.threshold["value"]

    def reconstruct(self, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        return self.method.reconstruct(x, batch_size)

    def metadata(self) -> dict:
        cfg = self.method.cfg
        return {"method": cfg.method, "config_hash": cfg.stable_hash(), "threshold": self.threshold,
                "preprocessing": self.preprocessing, "source": self.source,
                "input": "float32 N×C×S×S in [-1, 1] (pixel / max_value · 2 − 1), output: N anomaly scores"}


def save_maps(directory: Path, names: list[str], x: torch.Tensor, x_hat: torch.Tensor) -> list[Path]:
    """Per input, the reconstruction and |x − x̂| (2 maps to white) as PNG; returns the paths written."""
    from PIL import Image

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    difference = (x - x_hat).abs() / 2
    reconstruction = (x_hat + 1) / 2
    for i, name in enumerate(names):
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(name).name)
        for kind, image in (("reconstruction", reconstruction[i]), ("difference", difference[i])):
            pixels = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            path = directory / f"{i:05d}_{stem}_{kind}.png"
            Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(path)
            written.append(path)
    return written


# --- export ----------------------------------------------------------------------------------


class ScoringModel(nn.Module):
    """image batch (N×C×S×S in [-1, 1]) → anomaly scores (N), the method's own score in eval mode."""

    def __init__(self, method: Method) -> None:
        super().__init__()
        # A copy in the standard memory format: channels-last weights (a CPU training speed-up) are
        # strided views that torch.export.save cannot store as plain tensors.
        method = copy.deepcopy(method)
        for net in method.networks().values():
            net.to(memory_format=torch.contiguous_format)
        self.nets = nn.ModuleDict(method.networks())  # registers the weights for export
        self._method = method
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._method._score(x)


def example_input(detector: Detector, batch: int = 2) -> torch.Tensor:
    prep = detector.preprocessing
    g = torch.Generator().manual_seed(0)
    return torch.rand(batch, prep["channels"], prep["image_size"], prep["image_size"], generator=g) * 2 - 1


def export_program(detector: Detector, out: Path) -> torch.export.ExportedProgram:
    """torch.export the scoring model with a dynamic batch size; the .pt2 carries the metadata."""
    model = ScoringModel(detector.method)
    batch = torch.export.Dim("batch", min=1, max=65536)
    with torch.no_grad():
        program = torch.export.export(model, (example_input(detector),), dynamic_shapes={"x": {0: batch}})
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, out, extra_files={EXPORT_METADATA: json.dumps(detector.metadata())})
    return program


def load_program(path: Path) -> tuple[torch.export.ExportedProgram, dict]:
    extra = {EXPORT_METADATA: ""}
    program = torch.export.load(path, extra_files=extra)
    return program, json.loads(extra[EXPORT_METADATA])


def onnx_available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        return False
    return True


def export_onnx(program: torch.export.ExportedProgram, out: Path) -> Path:
    """The exported scoring program (`export_program`) as ONNX, dynamic batch kept (needs the `onnx` extra)."""
    onnx_program = torch.onnx.export(program, dynamo=True, input_names=["images"], output_names=["scores"], verbose=False)
    onnx_program.save(str(out))
    return out
