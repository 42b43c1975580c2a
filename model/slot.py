"""The serving slot: the one loaded model the app uses, swappable without a restart."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from model.generate import VLM
from model.loader import LoadConfig, load_model

log = logging.getLogger(__name__)


class ModelSlot:
    """Holds the current VLM. `swap` loads the new version first, then releases the old one,
    so a failed load leaves the demo serving what it served before."""

    def __init__(self, config: LoadConfig, loader: Callable[[LoadConfig], VLM] = load_model):
        self._loader = loader
        self._lock = threading.Lock()
        self.config = config
        self._vlm: VLM | None = None

    def get(self) -> VLM:
        with self._lock:
            if self._vlm is None:
                self._vlm = self._loader(self.config)
            return self._vlm

    def swap(self, config: LoadConfig) -> VLM:
        new = self._loader(config)
        with self._lock:
            old, self._vlm, self.config = self._vlm, new, config
        if old is not None:
            # Wait for a generation in flight on the old model before freeing its weights.
            with old._lock:
                old.release()
        log.info("now serving %s", new.info.describe())
        return new

    @property
    def loaded(self) -> bool:
        return self._vlm is not None
