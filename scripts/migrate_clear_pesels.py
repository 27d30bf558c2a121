"""Rewrite the documents written before issue 13 that still hold a PESEL in clear.

patients → `pesel_enc` (AES-GCM, FIELD_ENCRYPTION_KEY), callbacks → `masked_pesel`, SMS
dialogs → `pesel_enc`; the clear `pesel` field is deleted (common/services/patients.py,
`migrate_clear_pesels`). Pages through each collection until nothing is left; safe to run
again, and while the system runs (each document is rewritten in its own unit of work, guarded
by its version).

Usage (with GOOGLE_CLOUD_PROJECT, PESEL_HASH_KEY and FIELD_ENCRYPTION_KEY as the functions
have them, and application default credentials):

    python scripts/migrate_clear_pesels.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import wiring
from common.services.patients import migrate_clear_pesels


def main() -> int:
    total: dict[str, int] = {}
    while True:
        counts = migrate_clear_pesels(wiring.units(), wiring.vault(), wiring.now())
        for name, n in counts.items():
            total[name] = total.get(name, 0) + n
        if not any(counts.values()):
            break
    print(json.dumps(total))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
