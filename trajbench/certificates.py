"""The stored information certificates: which families need their demonstrations.

A family's certificate compares two non-learning solvers on its test levels
(``trajbench analyze certificates`` computes it; see ``docs/certificates.md``): the best
*query-only* policy (no context) and the *in-context decoder* (reads the level's K
demonstrations). A family is a **headline** family when the decoder, at its best K >= 1, beats the
query-only policy by at least :data:`HEADLINE_MARGIN`; else a **control**. The table this package
ships (``certificates.json``) records the command that produced it.

Example:
    >>> classify(query_only=0.3, decoder=1.0), classify(query_only=1.0, decoder=1.0)
    ('headline', 'control')
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

#: The table shipped with the package (written by ``trajbench analyze certificates --table``).
TABLE = Path(__file__).with_name("certificates.json")
#: How much the decoder must beat the query-only policy by for a headline family.
HEADLINE_MARGIN = 0.3
HEADLINE, CONTROL, UNCERTIFIED = "headline", "control", "uncertified"


def classify(query_only: float, decoder: float) -> str:
    """``headline`` when ``decoder - query_only >= HEADLINE_MARGIN``, else ``control``."""
    return HEADLINE if decoder - query_only >= HEADLINE_MARGIN - 1e-12 else CONTROL


@cache
def stored_certificates(path: Path = TABLE) -> dict[str, Any]:
    """The stored table: ``{"command", "config", "families": {env_id: certificate}}``."""
    return json.loads(Path(path).read_text()) if Path(path).exists() else {"families": {}}


def certificate_class(env_id: str) -> str:
    """A family's stored class: headline, control, or uncertified (not in the table)."""
    entry = stored_certificates()["families"].get(env_id)
    return UNCERTIFIED if entry is None else entry["class"]
