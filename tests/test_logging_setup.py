"""The CLI's console log handler follows sys.stderr, so main() can be called again after a swap."""
import io
import logging
import sys

import pytest

from hrem.utils.logging import setup_logging


@pytest.fixture
def restore_root_logger():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


def test_log_lines_go_to_the_current_stderr_after_the_first_one_is_closed(monkeypatch, restore_root_logger):
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    setup_logging("INFO")
    logging.getLogger("hrem.test").info("to the first")
    first.close()  # what pytest does to a finished test's capture, or a notebook to a finished cell's
    monkeypatch.setattr(sys, "stderr", second)
    logging.getLogger("hrem.test").info("to the second")
    text = second.getvalue()
    assert "to the second" in text and "Logging error" not in text


def test_setup_logging_replaces_earlier_handlers_and_keeps_a_log_file(tmp_path, restore_root_logger):
    setup_logging("INFO")
    setup_logging("WARNING", file=str(tmp_path / "run.log"))
    root = restore_root_logger
    assert len(root.handlers) == 2 and root.level == logging.WARNING
    logging.getLogger("hrem.test").warning("kept")
    for handler in root.handlers:
        handler.flush()
    assert "kept" in (tmp_path / "run.log").read_text()
