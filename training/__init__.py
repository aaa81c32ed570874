"""Training: fine-tuning from reviewed slices, the checkpoint registry, bootstrap from simulations.

Modules (each imports only the core :mod:`ptx_annotator`):

* :mod:`.trainer` - ``TrainConfig``, ``fit(model, train, val, config, progress, should_cancel) ->
  TrainResult``: the reusable loop (any dataset of ``(image [C,H,W], mask [1,H,W])``), AMP and
  channels_last on CUDA, DDP under torchrun, early stopping, cancel;
* :mod:`.data` - reviewed slices from the annotation store, or image + mask volume pairs;
* :mod:`.split` - the patient-level split frozen in the registry;
* :mod:`.registry` - versioned checkpoints, the active model, the not-worse rule;
* :mod:`.finetune` - one run end to end (used by ``ptx-annotate train`` and the napari widget);
* :mod:`.bootstrap` - a first model from pneumothoraces simulated in the user's own CTs;
* :mod:`.evaluate`, :mod:`.augment`, :mod:`.distributed`, :mod:`.reporting`.
"""
