"""Run ``genimage train`` on a machine that lacks the text encoder, from its cached caption states.

    python scripts/train_with_cached_text.py CACHE/text-<key> [CACHE/text-<key2> ...] -- \
        --data builtin:shapes --autoencoder ... --latent-cache CACHE ...   # any genimage train arguments

Text-conditional latent training reads the frozen encoder's states of the training captions
from the text cache (:mod:`genimage.latent.text_cache`), so the encoder itself is only needed
to build that cache. On a machine without the encoder's package (our lent GPU machines have
no package index, and the 87 MB MiniLM is too big to carry), build the cache where the
encoder is installed (any ``genimage train`` with the same ``--data``, ``--length``,
``--text-max-length`` and ``--text-layers`` writes it), copy its ``text-<key>`` folders
over, and train through this script: every request for a text encoder is answered by the
cached table with the same name, token length and layers. The trained model records the real
encoder (``"minilm"``) and runs anywhere that has it. A caption outside the table is an error.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv or argv.index("--") == 0:
        print(__doc__, file=sys.stderr)
        return 2
    split = argv.index("--")
    entries, train_args = argv[:split], argv[split + 1:]

    from genimage.conditioning import text
    from genimage.errors import GenimageError
    from genimage.latent.text_cache import read_text_cache

    try:
        tables = [read_text_cache(Path(e)) for e in entries]
    except GenimageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def from_name(name_or_path="minilm", max_length=32, device="cpu", *, batch_size=64, cache=True, layers=None):
        wanted = (str(name_or_path), int(max_length), tuple(layers) if layers else None)
        for table in tables:
            if (table.name, table.max_length, table.layers) == wanted:
                return table
        have = [(t.name, t.max_length, t.layers) for t in tables]
        raise GenimageError(f"no cached text table for (encoder, max_length, layers) = {wanted}; have {have}")

    text.TextEncoder.from_name = staticmethod(from_name)
    from genimage.cli.main import app

    return app(train_args if train_args[:1] == ["train"] else ["train", *train_args], standalone_mode=False) or 0


if __name__ == "__main__":
    raise SystemExit(main())
