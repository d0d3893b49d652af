"""The README's usage example runs as written."""
import re
from pathlib import Path

import torch


def test_readme_example_runs():
    src = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", src, re.S).group(1)
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    rate = scope["rate"]
    assert rate.shape == (32, 10)
    assert ((rate >= 0) & (rate <= 1)).all()
    first_conv = scope["net"][0]
    assert first_conv.weight.grad is not None and torch.isfinite(first_conv.weight.grad).all()
