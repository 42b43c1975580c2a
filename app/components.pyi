"""Small component variants the stock Gradio components do not cover."""

from __future__ import annotations

import gradio as gr

from gradio.events import Dependency

class PhotoInput(gr.Image):
    """An image upload that hands the raw uploaded file path to the handler.

    The stock component opens uploads with PIL before the handler runs, so a broken or
    disguised file fails there with a generic error. Here every upload goes through the
    product's image gate (`model.images.load_image`), which explains what is wrong with it.
    """

    def get_block_name(self) -> str:
        return "image"  # same front end as gr.Image

    def preprocess(self, payload):
        if payload is None:
            return None
        if payload.url and payload.url.startswith("data:"):
            return super().preprocess(payload)
        return payload.path
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component