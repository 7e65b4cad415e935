"""``genimage keys``: make and show the Ed25519 key that signs provenance manifests."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from genimage.cli.common import handle_errors

app = typer.Typer(help="Signing keys for provenance manifests (Ed25519).", no_args_is_help=True)


@app.command("new")
@handle_errors
def new(
    dir: Annotated[Optional[Path], typer.Option("--dir", help="Key folder; default $GENIMAGE_KEYS_DIR or ~/.config/genimage/keys")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing private key")] = False,
) -> None:
    """Make a key pair: DIR/signing.key (private, mode 0600; genimage signs every image it saves
    while this file exists or $GENIMAGE_SIGNING_KEY names a key) and DIR/trusted/<key id>.pub
    (share it: verifiers put it in their trusted folder)."""
    from genimage.provenance.keys import new_keys

    signer, private, public = new_keys(dir, force=force)
    typer.echo(f"key id {signer.key_id}\nprivate key: {private} (keep it secret)\npublic key: {public}")


@app.command("show")
@handle_errors
def show(
    trusted: Annotated[Optional[Path], typer.Option("--trusted", help="Trusted-keys folder; default $GENIMAGE_TRUSTED_KEYS or <keys dir>/trusted")] = None,
) -> None:
    """Print the signing key in use (if any) and the trusted public keys."""
    from genimage.provenance.keys import configured_signer, trusted_dir, trusted_keys

    signer = configured_signer()
    typer.echo(f"signing key: {signer.key_id} ({signer.path})" if signer else "signing key: none (images are saved unsigned)")
    keys = trusted_keys(trusted)
    typer.echo(f"trusted keys in {trusted_dir(trusted)}: {', '.join(keys) if keys else 'none'}")
