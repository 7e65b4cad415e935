"""Device choice: auto picks CUDA only where there is one; a missing or unknown device is a
clear GenimageError (the CLI turns it into one error line, exit 2)."""

import pytest
import torch

from genimage.errors import GenimageError
from genimage.utils.device import resolve_device

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")


def test_auto_and_cpu():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(None) == resolve_device("auto")
    assert resolve_device("cpu") == torch.device("cpu") == resolve_device(torch.device("cpu"))
    assert resolve_device(" CPU ") == torch.device("cpu")


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "tpu0", ""])
def test_unknown_names_are_refused(spec):
    if spec == "":
        assert resolve_device(spec) == resolve_device("auto")  # empty means auto
        return
    with pytest.raises(GenimageError, match="device"):
        resolve_device(spec)


@no_cuda
def test_missing_cuda_is_a_clear_error():
    with pytest.raises(GenimageError, match="no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(GenimageError, match="no CUDA GPU"):
        resolve_device("cuda:1")


def test_the_cli_reports_a_bad_device_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from genimage.cli.main import app

    res = CliRunner().invoke(app, ["sample", "--model", "digits", "-n", "1", "--out-dir", str(tmp_path),
                                   "--device", "gpu"])
    assert res.exit_code == 2, res.output
    assert "error: unknown device 'gpu'" in res.output and "Traceback" not in res.output
