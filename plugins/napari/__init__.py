"""The napari adapter of ptx-annotator: reader, review / compare / fine-tune widgets, sample data.

PyTorch's CUDA wheels bundle Triton, whose own LLVM crashes the process when it is loaded after
Mesa's software OpenGL (llvmpipe, which maps libLLVM) has drawn a napari canvas: importing
torchvision, segmentation-models-pytorch or the trainer then ends in a segmentation fault. This
plugin runs PyTorch eagerly (no ``torch.compile``), so Triton is kept out of the napari process
unless something loaded it before.
"""

import sys

if "triton" not in sys.modules:
    sys.modules["triton"] = None  # `import triton` raises ImportError; PyTorch then goes without it
