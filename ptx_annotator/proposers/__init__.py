"""Proposers: the contract, the classical pleural-air detector, the model engine, post-processing.

:func:`get_proposer` is the one way every door (CLI, napari, fine-tune) obtains a proposer.
"""

from __future__ import annotations

from ptx_annotator.proposers.contract import Proposal, Proposer, SliceResult, propose_volume, slice_order


def get_proposer(checkpoint=None, proposer: str = "classical", device: str | None = None,
                 precision: str | None = None, **options) -> Proposer:
    """The model proposer for ``checkpoint`` if one is given (``proposer='combined'``: kept to the
    pleural cavities), else the named weight-free proposer."""
    if checkpoint is not None:
        if proposer == "combined":  # the model kept to the pleural cavities (proposers/combined.py)
            from ptx_annotator.proposers.combined import CombinedProposer

            return CombinedProposer.from_checkpoint(checkpoint, device=device, precision=precision, **options)
        from ptx_annotator.proposers.inference import ModelProposer

        return ModelProposer.from_checkpoint(checkpoint, device=device, precision=precision, **options)
    if proposer == "classical":
        from ptx_annotator.proposers.classical import ClassicalProposer

        return ClassicalProposer(**options)
    raise ValueError(f"Unknown proposer '{proposer}'; use 'classical' or give a checkpoint.")


__all__ = ["Proposal", "Proposer", "SliceResult", "get_proposer", "propose_volume", "slice_order"]
