import stat
import subprocess
import sys
from pathlib import Path

from health_platform.local_secrets import local_key_b64, local_secret

REPO = Path(__file__).resolve().parents[2]


def test_a_generated_key_is_private_and_stable(tmp_path):
    first = local_key_b64(tmp_path, "record-key")
    again = local_key_b64(tmp_path, "record-key")
    mode = stat.S_IMODE((tmp_path / "secrets" / "record-key").stat().st_mode)
    assert first == again
    assert len(first) == 44  # base64 of 32 bytes
    assert mode == 0o600
    assert local_secret(tmp_path, "other") != local_secret(tmp_path, "another")


def test_processes_starting_at_once_agree_on_one_key(tmp_path):
    code = (
        "import sys; from pathlib import Path; from health_platform.local_secrets import local_key_b64; "
        "print(local_key_b64(Path(sys.argv[1]), 'shared'))"
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    keys = {p.communicate(timeout=60)[0].strip() for p in processes}
    assert len(keys) == 1
    assert keys.pop() == (tmp_path / "secrets" / "shared").read_text()
