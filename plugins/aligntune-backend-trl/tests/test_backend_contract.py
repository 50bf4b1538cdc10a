"""The TRL backend meets the backend contract (aligntune.testing.check_backend_contract): resume after kill -9,
half-written checkpoints, changed settings, the non-finite guard, SIGTERM, the output-directory lock, the record."""

from __future__ import annotations

import pytest

from aligntune.testing import check_backend_contract, tiny_backend_inputs


@pytest.mark.slow
def test_the_trl_backend_meets_the_backend_contract(tmp_path):
    model_dir, data_file = tiny_backend_inputs(tmp_path / "inputs")
    results = check_backend_contract("trl", model_dir=model_dir, data_file=data_file, workdir=tmp_path / "work")
    assert [result.name for result in results if result.passed] == [result.name for result in results]
