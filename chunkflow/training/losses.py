"""What a training step computes its loss on, and the loss.

The loss is computed on what inference would output: `post_process(model(pre_process(image)))`
(`forward`), compared with the targets of `chunkflow.training.data` under their loss weights.

Model outputs: a tensor (one target, or several whose channels are concatenated in the order
of the targets), a tuple or list (one tensor per target, in order) or a dict (keyed by the
targets' output names). A 2D model (`spatial_dims` 2) gets (batch, channel, y, x) and returns
(batch, channel, y, x). Each target's loss is the weighted mean of a per-voxel loss (`bce`,
`mse`, `l1`; the balanced ones weigh positives and negatives half each) and the losses add up.
The loss `model` calls the model file's `loss` instead, as gunpowder's Train does:
`loss_inputs` maps its positional (int) or keyword (str) arguments to batch entries:
"prediction", "target", "weight" (balanced for binary targets, else the mask), "mask",
"image", "label", each optionally ":OUTPUT" for a target other than the first; without
`loss_inputs` it is called as loss(prediction, target).
"""

from __future__ import annotations

from chunkflow.errors import ChunkflowError, ParameterError
from chunkflow.training.data import PipelineSpec

__all__ = ["forward", "check_model_output", "model_file_loss", "voxel_loss"]

LOSS_INPUT_NAMES = ("prediction", "target", "weight", "mask", "image", "label")


def forward(backend, image, spec: PipelineSpec) -> dict:
    """{output name: prediction (batch, channel, z, y, x)} of the model on an image batch
    (batch, channel, z, y, x): post_process(model(pre_process(x))), split by target."""
    import torch

    x = image[:, :, 0] if spec.spatial_dims == 2 else image
    x = backend.pre_process(x) if backend.pre_process else x
    if backend.channels_last and x.dim() == 5:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    y = backend.model(x)
    y = backend.post_process(y) if backend.post_process else y
    targets = spec.targets
    if isinstance(y, dict):
        missing = [t.output for t in targets if t.output not in y]
        if missing:
            raise ParameterError(
                f"the model returns outputs {', '.join(map(str, y))} but not "
                f"{', '.join(missing)} (one per `targets` KIND:OUTPUT)"
            )
        outputs = {t.output: y[t.output] for t in targets}
    elif isinstance(y, (list, tuple)):
        if len(y) != len(targets):
            raise ChunkflowError(
                f"the model returns {len(y)} outputs for {len(targets)} targets "
                f"({', '.join(t.output for t in targets)})"
            )
        outputs = {t.output: out for t, out in zip(targets, y)}
    else:
        sizes = [t.channels(spec.spatial_dims) for t in targets]
        if not isinstance(y, torch.Tensor) or y.dim() < 2 or y.shape[1] != sum(sizes):
            what = (
                f"{y.shape[1]} channels (shape {tuple(y.shape)})"
                if isinstance(y, torch.Tensor) and y.dim() >= 2
                else f"a {type(y).__name__}"
            )
            raise ChunkflowError(
                f"the model outputs {what} but the targets have {sum(sizes)} channels "
                f"({' + '.join(f'{n} {t.kind}' for n, t in zip(sizes, targets))})"
            )
        outputs = dict(zip((t.output for t in targets), torch.split(y, sizes, dim=1)))
    if spec.spatial_dims == 2:
        outputs = {k: v.unsqueeze(2) if v.dim() == 4 else v for k, v in outputs.items()}
    return outputs


def check_model_output(backend, spec: PipelineSpec, model_path: str, device, channels=1):
    """Run one zero batch: each target's output must have its channels and the size of the
    output patch."""
    import torch

    backend.model.eval()
    with torch.no_grad():
        x = torch.zeros((1, channels, *spec.input_size), device=device)
        try:
            outputs = forward(backend, x, spec)
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0]
            raise ChunkflowError(
                f"model file {model_path} fails on a {tuple(spec.input_size)} input patch with "
                f"{channels} channel(s) ({first})"
            ) from None
        except ChunkflowError as err:
            raise type(err)(f"model file {model_path}: {err}") from None
    layout = "(batch, channel, y, x)" if spec.spatial_dims == 2 else "(batch, channel, z, y, x)"
    for target in spec.targets:
        y = outputs[target.output]
        what = f"model file {model_path}, output {target.output!r}"
        if not isinstance(y, torch.Tensor) or y.dim() != 5:
            shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ChunkflowError(f"{what} has shape {shape}, not {layout}")
        expected = target.channels(spec.spatial_dims)
        if y.shape[1] != expected:
            raise ParameterError(
                f"{what} has {y.shape[1]} channels but the {target.kind} target has {expected}"
                + (" (one per `neighborhood` offset)" if target.kind == "affinities" else "")
            )
        if tuple(y.shape[2:]) != tuple(spec.output_size):
            size = " ".join(map(str, y.shape[2:]))
            raise ParameterError(
                f"{what} turns a {tuple(spec.input_size)} input patch into "
                f"{tuple(y.shape[2:])}, not the output patch {tuple(spec.output_size)} "
                f"(set `output_size` {size})"
            )


def model_file_loss(model_path: str, spec: PipelineSpec):
    """With the loss "model": a function (predictions, batch tensors) -> loss calling the
    model file's `loss` with its `loss_inputs`; else None."""
    uses = {t.loss == "model" for t in spec.targets}
    if uses == {False}:
        return None
    if uses != {True}:
        raise ChunkflowError("the loss 'model' replaces all named losses: give it alone")
    from chunkflow.plugins import load_source

    source = load_source(model_path, "model file")
    function = getattr(source, "loss", None)
    if not callable(function):
        raise ParameterError(f"model file {model_path} defines no loss function for `loss` model")
    first = spec.targets[0].output
    loss_inputs = getattr(source, "loss_inputs", None)
    if loss_inputs is None:
        if len(spec.targets) > 1:
            raise ChunkflowError(
                f"model file {model_path}: several targets need loss_inputs to say which "
                "predictions and targets the loss gets"
            )
        loss_inputs = {0: "prediction", 1: "target"}
    if not isinstance(loss_inputs, dict):
        raise ChunkflowError(f"model file {model_path}: loss_inputs must be a dict")
    outputs = {t.output for t in spec.targets}
    wanted = {}
    for key, value in loss_inputs.items():
        what, _, output = str(value).partition(":")
        output = output or first
        if what not in LOSS_INPUT_NAMES or (
            what not in ("image", "label") and output not in outputs
        ):
            raise ChunkflowError(
                f"model file {model_path}: loss_inputs[{key!r}] = {value!r}; expected one of "
                f"{', '.join(LOSS_INPUT_NAMES)}, optionally :OUTPUT among {', '.join(outputs)}"
            )
        if not isinstance(key, (int, str)):
            raise ChunkflowError(f"model file {model_path}: loss_inputs key {key!r} is no int/str")
        wanted[key] = (what, output)
    positions = sorted(k for k in wanted if isinstance(k, int))
    if positions != list(range(len(positions))):
        raise ChunkflowError(f"model file {model_path}: loss_inputs positions must be 0..n-1")

    def compute(predictions: dict, tensors: dict):
        def value(what, output):
            if what == "prediction":
                return predictions[output]
            if what in ("image", "label"):
                return tensors[what]
            return tensors[f"{what}:{output}"]

        args = [value(*wanted[k]) for k in positions]
        kwargs = {k: value(*v) for k, v in wanted.items() if isinstance(k, str)}
        return function(*args, **kwargs)

    return compute


# pieces of the step ---------------------------------------------------------------------------


def voxel_loss(kind: str, prediction, target, weight):
    """Weighted mean of the per-voxel loss (weights sum to the normaliser); "balanced-" losses
    differ from the plain ones only in the weights the data pipeline made."""
    import torch.nn.functional as F

    base = kind.removeprefix("balanced-")
    if base == "bce":
        eps = 1e-6
        per_voxel = F.binary_cross_entropy(prediction.clamp(eps, 1 - eps), target, reduction="none")
    elif base == "mse":
        per_voxel = (prediction - target) ** 2
    elif base == "l1":
        per_voxel = (prediction - target).abs()
    else:
        raise ChunkflowError(f"unknown loss {kind!r}")
    return (per_voxel * weight).sum() / weight.sum().clamp(min=1e-6)
