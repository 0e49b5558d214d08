"""Model files written into tmp_path by tests."""

PATCH_DEPENDENT = '''
import torch

class Net(torch.nn.Module):
    """Output depends on the whole patch, so the blending weights matter."""

    def __init__(self, crop, channels):
        super().__init__()
        self.crop = crop
        self.channels = channels
        self.scale = torch.nn.Parameter(torch.ones(1))

    def forward(self, x):
        mz, my, mx = self.crop
        z, y, x_ = x.shape[2:]
        core = x[:, :, mz:z - mz, my:y - my, mx:x_ - mx]
        gain = 1 + x.mean(dim=(1, 2, 3, 4), keepdim=True)
        return (core * gain * self.scale).expand(-1, self.channels, -1, -1, -1)

InstantiatedModel = Net(CROP, CHANNELS)
'''


UNIVERSAL = """
import numpy as np

class PatchInferencer:
    def __init__(self, weight_path, output_patch_mask):
        self.mask = np.asarray(output_patch_mask)
        self.gain = float(open(weight_path).read()) if weight_path else 1.0

    def __call__(self, patch):
        assert patch.ndim == 5 and patch.dtype == np.float32
        return patch * self.gain * self.mask
"""


NAN_CORNER = '''
import torch

class Net(torch.nn.Module):
    """The input, with NaN at the first voxel of every patch."""

    def forward(self, x):
        out = x.clone()
        out[:, :, 0, 0, 0] = float("nan")
        return out

InstantiatedModel = Net()
'''


def write(tmp_path, name, source, **constants):
    for key, value in constants.items():
        source = source.replace(key, repr(value))
    path = tmp_path / name
    path.write_text(source)
    return path


WHOLE_PATCH = '''
import torch

class Net(torch.nn.Module):
    """Returns the whole input patch (no crop) in CHANNELS channels, channel c times gain[c]:
    the caller crops the output patch from its centre and keeps the channels it needs."""

    def __init__(self, channels):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.ones(channels))

    def forward(self, x):
        return x * self.gain.view(1, -1, 1, 1, 1)

InstantiatedModel = Net(CHANNELS)
'''
