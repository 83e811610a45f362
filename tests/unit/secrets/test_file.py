"""The file: provider: files rendered by Vault Agent, the CSI driver or External Secrets, read at each call."""

from __future__ import annotations

from pathlib import Path

import pytest

from mfa_gateway.adapters.secrets.file import FileProvider
from mfa_gateway.ports import PermanentSecretError
from mfa_gateway.secrets.refs import parse_ref


def test_reads_the_whole_file_or_one_field_of_a_json_file(tmp_path: Path) -> None:
    """No field: the whole file, stripped; #field: that field of a JSON object, a non-string one as JSON text."""
    (tmp_path / "token").write_text("t-1\n")
    (tmp_path / "db.json").write_text('{"password": "pw-1", "n": 3}')
    provider = FileProvider()
    assert provider.fetch(parse_ref(f"file:{tmp_path}/token")).value.reveal() == "t-1"
    assert provider.fetch(parse_ref(f"file:{tmp_path}/db.json#password")).value.reveal() == "pw-1"
    assert provider.fetch(parse_ref(f"file:{tmp_path}/db.json#n")).value.reveal() == "3"


def test_a_missing_file_or_field_is_permanent_and_named(tmp_path: Path) -> None:
    """A file that is not there, or a field the JSON lacks, fails closed with the reference in the message."""
    (tmp_path / "db.json").write_text('{"password": "pw-1"}')
    provider = FileProvider()
    with pytest.raises(PermanentSecretError, match=r"(?i)no such file") as missing:
        provider.fetch(parse_ref(f"file:{tmp_path}/missing"))
    assert f"file:{tmp_path}/missing" in str(missing.value)
    with pytest.raises(PermanentSecretError, match="no field 'passwd'") as field:
        provider.fetch(parse_ref(f"file:{tmp_path}/db.json#passwd"))
    assert "pw-1" not in str(field.value)
