"""A rules folder with one more version, made the way index.yaml says a rule change is made:
a copy of common/domain/rules, a NEW vaccines file, and one more line in index.yaml."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import yaml

from common.domain.rulebook import INDEX_FILE, RULES_DIR

NEW_VERSION = "2031.1"
NEW_FILE = f"vaccines-{NEW_VERSION}.yaml"
# What the new version changes (the rest of the catalogue is copied as it is):
COMIRNATY_WINDOW = {"min_interval_days": 21, "planned_interval_days": 28, "max_interval_days": 30}
COMIRNATY_NEW_NAME = "Comirnaty (2031)"
JCOVDEN_MIN_AGE = 21  # was 18


def write_rules_with_new_version(target: Path, effective_from: date) -> Path:
    """`target` becomes a rules folder whose vaccines version NEW_VERSION is in force from
    `effective_from` (a Warsaw date); before that day the packaged version applies."""
    shutil.copytree(RULES_DIR, target)
    current = yaml.safe_load((target / "vaccines.yaml").read_text(encoding="utf-8"))
    current["version"] = NEW_VERSION
    current["effective_from"] = effective_from.isoformat()
    for product in current["products"]:
        if product["code"] == "comirnaty":
            product.update(COMIRNATY_WINDOW, name=COMIRNATY_NEW_NAME)
        if product["code"] == "jcovden":
            product["min_age"] = JCOVDEN_MIN_AGE
    (target / NEW_FILE).write_text(
        yaml.safe_dump(current, allow_unicode=True, sort_keys=False), encoding="utf-8"
    )
    index = yaml.safe_load((target / INDEX_FILE).read_text(encoding="utf-8"))
    index["vaccines"].append(
        {"version": NEW_VERSION, "effective_from": effective_from.isoformat(), "file": NEW_FILE}
    )
    (target / INDEX_FILE).write_text(yaml.safe_dump(index, sort_keys=False), encoding="utf-8")
    return target
