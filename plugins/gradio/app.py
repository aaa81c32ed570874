"""Gradio chest X-ray demo: upload an X-ray, see the predicted pneumothorax mask and numbers.

``build_demo(checkpoint)`` returns the :class:`gradio.Blocks`; nothing is launched at import.
``launch_demo(demo, ...)`` starts it (local server, optional share link, auth, upload limit).
The prediction itself is :func:`ptx_annotator.xray.predict.predict_xray` (the core); this module
only reads the upload, calls it and formats the answer. Only a whitelist of technical DICOM
fields ever leaves the server (defined terms only: free text becomes "other"): no patient name,
ID, dates or file names. Each upload is read once and deleted from the server at once (the decoded
image is kept in memory for re-runs with another threshold); whatever is left goes at shutdown
(:func:`close_demo`). A CT slice given as an X-ray is refused.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

import gradio as gr
import numpy as np

from ptx_annotator.errors import PtxError
from ptx_annotator.xray.io import load_xray, refuse_non_radiograph
from ptx_annotator.xray.preprocess import resize_image, resize_mask

TITLE = "Pneumothorax on chest X-ray"
LABEL = "pneumothorax"
DISPLAY_MAX_SIDE = 1024
DEFAULT_MAX_FILE_SIZE = "64mb"
DEFAULT_CONCURRENCY = 2
#: Waiting requests the queue holds: 20 simultaneous callers are all answered (tests/gradio) with room to spare.
DEFAULT_QUEUE_SIZE = 64
#: Decoded uploads kept in memory for re-runs (threshold changes) after their files were deleted.
KEPT_IMAGES = 8
PUBLIC_META_KEYS = ("format", "modality", "view_position", "body_part", "photometric", "bits_stored", "rows",
                    "columns", "original_mode")
HOW_TO_GET_A_MODEL = (
    "No model is loaded, so no prediction is made (the image is still read and shown). To get one, train it on "
    "the SIIM-ACR chest X-rays: `ptx-annotate train-xray --images SIIM_DICOM_DIR --rle train-rle.csv "
    "--out xray-unet.safetensors`, then restart with `ptx-annotate xray-demo --checkpoint xray-unet.safetensors`."
)
DISCLAIMER = "Research demonstration only, not a medical device: never use it for diagnosis."
#: The one message a demo without a model shows (before and after an upload alike).
NO_MODEL_STATUS = f"### No model loaded\n\n{HOW_TO_GET_A_MODEL}"


class PrivateOutputs:
    """Wraps a component's ``postprocess`` so the files of each answer are its own.

    Gradio names output files by content and rewrites them in place, so two answers with the same
    picture (the same empty mask, say) shared one file that was truncated while being downloaded
    (seen with 20 simultaneous calls). Each answer gets private copies, written atomically under
    one lock; they are deleted when the demo closes. (A subclass of the component would make
    Gradio write a ``.pyi`` beside this module at import, which fails in a read-only install.)
    """

    _write_lock = threading.Lock()

    def __init__(self, postprocess):
        self._postprocess = postprocess
        self.files: set[str] = set()

    def __call__(self, value):
        import shutil
        import uuid

        with self._write_lock:
            data = self._postprocess(value)
            if data is None:
                return data
            for item in [data.image, *[a.image for a in data.annotations]]:
                source = Path(item.path)
                private = source.with_name(f"{uuid.uuid4().hex}{source.suffix}")
                partial = private.with_name(f".{private.name}.partial")
                shutil.copyfile(source, partial)
                os.replace(partial, private)
                item.path = str(private)
                self.files.add(str(private))
        return data

    def forget_files(self) -> None:
        for path in self.files:
            _delete_upload(path)
        self.files.clear()


class XrayPredictor:
    """Holds the model once; ``__call__`` is the ``/predict`` endpoint."""

    def __init__(self, checkpoint=None, device: str = "cpu"):
        self.model, self.meta, self.device = None, None, device
        self.checkpoint_name = None
        self._images: OrderedDict[str, object] = OrderedDict()
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        if checkpoint:
            from pathlib import Path

            import torch

            from ptx_annotator.model import load_checkpoint
            from ptx_annotator.xray.predict import xray_settings

            self.model, self.meta = load_checkpoint(checkpoint, device)
            self.model = self.model.to(memory_format=torch.channels_last)
            xray_settings(self.meta)  # refuses a CT checkpoint now, not at the first upload
            self.checkpoint_name = self.meta.name or Path(checkpoint).stem

    @property
    def default_threshold(self) -> float:
        return float(self.meta.threshold) if self.meta is not None else 0.4

    def __call__(self, file_path, threshold=None):
        """(annotated image, status Markdown, JSON numbers) for one uploaded file."""
        try:
            return self._predict(file_path, threshold)
        except PtxError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        except gr.Error:
            raise
        except Exception as exc:  # never a traceback in the page
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise gr.Error(f"The image could not be analysed ({type(exc).__name__}: {first}). Try another file "
                           "or export it again as PNG, JPEG or DICOM.", print_exception=False) from None

    def _predict(self, file_path, threshold):
        if not file_path:
            raise gr.Error("No file was uploaded: choose a chest X-ray (PNG, JPEG or DICOM) first.",
                           print_exception=False)
        image = self._read_upload(_path_of(file_path))
        public = {key: image.meta[key] for key in PUBLIC_META_KEYS if key in image.meta}
        display = _display_image(image.unit())
        if self.model is None:
            numbers = {"model": None, "pneumothorax": None, "image": public,
                       "spacing_mm": _spacing(image), "warnings": image.meta.get("warnings", [])}
            return (display, []), NO_MODEL_STATUS, numbers
        from ptx_annotator.xray.predict import predict_xray

        threshold = self.default_threshold if threshold is None else float(threshold)
        if not 0.0 < threshold < 1.0:
            raise gr.Error(f"The mask threshold must lie between 0 and 1 (got {threshold}).", print_exception=False)
        result = predict_xray(image, self.model, self.meta, threshold=threshold, device=self.device)
        mask = resize_mask(result.pop("mask"), display.shape[:2]).astype(np.float32)
        result.pop("probability")
        numbers = {"model": self.checkpoint_name, **result, "image": public}
        return (display, [(mask, LABEL)]), _status(result), numbers

    def _read_upload(self, path: str):
        """The decoded upload (refused unless it is a radiograph); its file is deleted once read.

        Gradio names uploads by content, so the same image sent again lands on the same path: it
        is answered from memory and its new copy deleted too.
        """
        with self._lock:  # one upload at a time: decoding is short next to the model
            if path in self._images:
                self._images.move_to_end(path)
                _delete_upload(path)
                return self._images[path]
            if path in self._seen and not os.path.exists(path):
                raise gr.Error("That upload was already analysed and deleted from the server (uploads are never "
                               "kept): upload the image again.", print_exception=False)
            self._seen.add(path)
            try:
                image = load_xray(path)
                refuse_non_radiograph(image)
            finally:
                _delete_upload(path)
            self._images[path] = image
            while len(self._images) > KEPT_IMAGES:
                self._images.popitem(last=False)
            return image

    def forget_uploads(self) -> None:
        """Drop the decoded images and delete any upload file still on disk (at shutdown)."""
        with self._lock:
            self._images.clear()
            seen, self._seen = set(self._seen), set()
        for path in seen:
            _delete_upload(path)


def _delete_upload(path: str) -> None:
    """Delete one uploaded file, and its folder when Gradio made it for that file alone."""
    try:
        os.unlink(path)
    except OSError:
        return
    try:
        Path(path).parent.rmdir()  # only succeeds when empty
    except OSError:
        pass


def build_demo(checkpoint=None, device: str = "cpu", concurrency_limit: int = DEFAULT_CONCURRENCY,
               queue_size: int = DEFAULT_QUEUE_SIZE) -> gr.Blocks:
    """The demo's Blocks (not launched). ``checkpoint=None`` starts without a model and explains."""
    predictor = XrayPredictor(checkpoint, device)
    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.Markdown(f"# {TITLE}\n\n{DISCLAIMER}")
        has_model = predictor.model is not None
        if has_model:
            gr.Markdown(_model_line(predictor))
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label="Chest X-ray: PNG, JPEG or DICOM", type="filepath")
                # without a model there is nothing to threshold or analyse: no control that does nothing
                threshold = gr.Slider(0.05, 0.95, value=predictor.default_threshold, step=0.05, visible=has_model,
                                      label="Mask threshold (probability a pixel needs to be in the mask)")
                button = gr.Button("Analyse", variant="primary", visible=has_model)
            with gr.Column(scale=2):
                overlay = gr.AnnotatedImage(label="X-ray with predicted pneumothorax" if has_model else "X-ray",
                                            color_map={LABEL: "#ff2020"})
                overlay.postprocess = private_outputs = PrivateOutputs(overlay.postprocess)
                status = gr.Markdown("Upload an image to start." if has_model else NO_MODEL_STATUS, label="summary")
                numbers = gr.JSON(label="Result")
        outputs = [overlay, status, numbers]
        button.click(predictor, [upload, threshold], outputs, api_name="predict", concurrency_limit=concurrency_limit,
                     concurrency_id="model")
        upload.upload(predictor, [upload, threshold], outputs, api_visibility="private", concurrency_id="model")
        threshold.release(predictor, [upload, threshold], outputs, api_visibility="private", concurrency_id="model")
    demo.queue(max_size=queue_size, default_concurrency_limit=concurrency_limit)
    demo.predictor, demo.private_outputs = predictor, private_outputs
    return demo


def launch_demo(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
                auth: tuple[str, str] | None = None, max_file_size=DEFAULT_MAX_FILE_SIZE,
                prevent_thread_lock: bool = True, quiet: bool = False) -> dict:
    """Start the server; returns ``{'local_url', 'share_url', 'share_failed'}``.

    Without internet Gradio cannot make the public link: it warns and returns no share URL; the
    local server keeps serving and ``share_failed`` is True.
    """
    demo.launch(server_name=host, server_port=port, share=share, auth=auth, max_file_size=max_file_size,
                prevent_thread_lock=prevent_thread_lock, quiet=quiet, show_error=True,
                footer_links=["api"])
    share_url = getattr(demo, "share_url", None)
    return {"local_url": demo.local_url, "share_url": share_url, "share_failed": bool(share and not share_url)}


def close_demo(demo: gr.Blocks) -> None:
    """Stop the server and delete every upload it still holds (nothing of a patient stays behind)."""
    demo.close()
    predictor = getattr(demo, "predictor", None)
    if predictor is not None:
        predictor.forget_uploads()
    outputs = getattr(demo, "private_outputs", None)
    if outputs is not None:
        outputs.forget_files()


def _path_of(file_value) -> str:
    if isinstance(file_value, dict):  # a FileData payload
        return file_value.get("path") or ""
    return str(getattr(file_value, "name", file_value))


def _display_image(unit: np.ndarray) -> np.ndarray:
    rows, columns = unit.shape
    scale = min(1.0, DISPLAY_MAX_SIDE / max(rows, columns))
    if scale < 1.0:
        unit = resize_image(unit, (max(1, round(rows * scale)), max(1, round(columns * scale))))
    grey = np.round(np.clip(unit, 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.stack([grey, grey, grey], axis=-1)


def _spacing(image):
    return None if image.spacing_mm is None else [float(v) for v in image.spacing_mm]


def _status(result: dict) -> str:
    verdict = "**Pneumothorax: YES**" if result["pneumothorax"] else "**Pneumothorax: no**"
    if result["area_cm2"] is not None:
        area = f"{result['area_px']:,} pixels = {result['area_cm2']:.2f} cm²"
    else:
        area = f"{result['area_px']:,} pixels (no valid pixel spacing in the file, so no cm²)"
    lines = [f"### {verdict}", f"- predicted area: {area}",
             f"- highest pixel probability: {result['max_probability']:.3f}", f"- rule: {result['rule']}"]
    lines += [f"- note: {warning}" for warning in result.get("warnings", [])]
    return "\n".join(lines)


def _model_line(predictor: XrayPredictor) -> str:
    if predictor.meta is None:
        return f"**{HOW_TO_GET_A_MODEL}**"
    meta = predictor.meta
    dice = (meta.metrics or {}).get("dice")
    quality = f", validation Dice {dice}" if dice is not None else ""
    return (f"Model: `{predictor.checkpoint_name}` (U-Net {meta.encoder}, input {meta.input_size} px{quality}); "
            f"default mask threshold {meta.threshold:.2f}.")
