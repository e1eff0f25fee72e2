"""Every fenced block of README.md and docs/*.md is exercised as its marker says.

The markers and their kinds are described in ``_blocks.py`` (and in the message a block
without one fails with); what each kind does is in ``_run.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ._blocks import Block, all_blocks
from ._run import RUNNERS

BLOCKS = all_blocks()


@pytest.mark.parametrize("block", BLOCKS, ids=[block.where for block in BLOCKS])
async def test_doc_block(block: Block, tmp_path: Path) -> None:
    if block.error:
        pytest.fail(block.error, pytrace=False)
    await RUNNERS[block.kind](block, tmp_path)
