"""Gradio chest X-ray demo: ``from ptx_annotator.plugins.gradio.app import build_demo``.

Kept import-free so that importing the plugins package never pulls in gradio.
"""
