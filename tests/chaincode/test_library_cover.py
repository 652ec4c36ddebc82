"""fabric-chaincode-python 2.5.4 sets the root logger to DEBUG on import and its stub logs state
values at INFO. The project imports it only through chaincode.library, which undoes that."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import logging, sys
logging.getLogger().setLevel(logging.WARNING)
before = list(logging.getLogger().handlers)
import {module}
root = logging.getLogger()
print(logging.getLevelName(root.level), len(root.handlers) - len(before),
      logging.getLevelName(logging.getLogger("asyncio").getEffectiveLevel()))
"""


def _probe(module: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(module=module)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout.split()


def test_the_library_alone_turns_the_root_logger_to_debug():
    """The defect, shown: if this starts failing, the library was fixed and the cover can go."""
    assert _probe("fabric_chaincode_python.fabric_contract_api")[0] == "DEBUG"


def test_importing_through_chaincode_library_leaves_logging_as_it_was():
    level, added_handlers, asyncio_level = _probe("chaincode.library")
    assert level == "WARNING"
    assert added_handlers == "0"
    assert asyncio_level == "WARNING"


def test_contract_calls_log_no_state_values(tmp_path, caplog):
    from ledger.embedded import EmbeddedLedger

    caplog.set_level("DEBUG")
    chain = EmbeddedLedger(tmp_path / "quiet.sqlite3")
    secret_hash = "5ec12e7" + "0" * 57
    chain.submit("anchors", "AnchorRecord", "rec-quiet", "a" * 64, secret_hash, "1")
    chain.evaluate("anchors", "ReadAnchor", "rec-quiet")
    assert secret_hash not in caplog.text
    assert "a" * 64 not in caplog.text
