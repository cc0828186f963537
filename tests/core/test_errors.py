"""The one error formatter: worker-process errors and OSErrors keep their point in one line."""

from __future__ import annotations

import errno

import pytest
from torch.utils.data import DataLoader, Dataset

from visualizer.core.errors import debug_enabled, describe, first_line


class _Bad(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, i):
        raise ValueError(f"cannot read sample {i} of /data/x.png: broken")


def test_an_error_in_a_dataloader_worker_keeps_its_message():
    with pytest.raises(ValueError) as info:
        next(iter(DataLoader(_Bad(), num_workers=1)))
    assert str(info.value).startswith("Caught ValueError in DataLoader worker process 0.")
    assert first_line(info.value) == "cannot read sample 0 of /data/x.png: broken"


def test_an_oserror_names_its_file_without_the_errno_prefix():
    exc = FileNotFoundError(errno.ENOENT, "No such file or directory", "/tmp/absent.pt")
    assert first_line(exc) == "No such file or directory: /tmp/absent.pt"
    assert first_line(OSError("plain message")) == "plain message"


def test_describe_marks_internal_errors_and_keeps_expected_ones_plain():
    assert describe(ValueError("density must be in (0, 1]")) == "density must be in (0, 1]"
    text = describe(KeyError("w"), expected=False)
    assert text.startswith("KeyError: 'w'") and "--debug" in text
    assert first_line(RuntimeError()) == "RuntimeError"
    assert first_line(RuntimeError("a\nb"), with_type=True, limit=1) == "RuntimeError: a"


@pytest.mark.parametrize(("value", "on"), [("", False), ("0", False), ("1", True), ("yes", True)])
def test_debug_follows_the_environment(monkeypatch, value, on):
    monkeypatch.setenv("PRUNEVIZ_DEBUG", value)
    assert debug_enabled() is on


def test_tasks_first_line_is_the_same_formatter():
    from visualizer.core import tasks

    assert tasks.first_line is first_line
