"""Real data no one in this project wrote: easy-VQA images and questions, an English text corpus.

Both come from packages a registry serves and need no network at run time:
:mod:`.easy_vqa` (the ``easy-vqa`` PyPI package, MIT) and :mod:`.text` (CPython's
``pydoc_data.topics``, PSF licence).
"""

from liquidgen.errors import LiquidgenError


class DatasetUnavailableError(LiquidgenError):
    """A data package is not installed (install the ``data`` extra: ``pip install liquidgen[data]``)."""
