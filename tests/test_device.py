import pytest
import torch

from grounded_sam.device import autocast, resolve_autocast_dtype, resolve_device
from grounded_sam.errors import UserInputError


def test_auto_picks_cuda_when_present(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


def test_auto_falls_back_to_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")


def test_explicit_and_bad_devices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="Unknown device"):
        resolve_device("gpu please")
    with pytest.raises(UserInputError, match=r"torch sees 2 CUDA GPU\(s\) \(cuda:0 to cuda:1\)"):
        resolve_device("cuda:2")


def test_a_device_that_is_not_there_is_refused_before_any_model_loads(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(UserInputError, match="torch sees no CUDA GPU here; use 'auto' or 'cpu'"):
        resolve_device("cuda")
    with pytest.raises(UserInputError, match="MPS is not available"):
        resolve_device("mps")


@pytest.mark.parametrize(
    "dtype, device, bf16, expected",
    [
        ("auto", "cpu", True, None),
        ("auto", "cuda", True, torch.bfloat16),
        ("auto", "cuda", False, torch.float16),
        ("float32", "cuda", True, None),
        ("bfloat16", "cpu", True, torch.bfloat16),
        ("float16", "cuda", True, torch.float16),
    ],
)
def test_autocast_dtype(monkeypatch, dtype, device, bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: bf16)
    assert resolve_autocast_dtype(dtype, torch.device(device)) == expected


def test_unknown_dtype_raises():
    with pytest.raises(ValueError, match="Unknown dtype"):
        resolve_autocast_dtype("int8", torch.device("cpu"))


def test_autocast_context_is_scoped():
    with autocast(torch.device("cpu"), torch.bfloat16):
        assert torch.is_autocast_enabled("cpu")
    assert not torch.is_autocast_enabled("cpu")
