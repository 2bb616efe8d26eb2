"""Data quality of the current rows against the reference rows: one summary, two readers.

`by_feature` is the per-feature table (missing share each side, categories of current
never seen in reference, share of current numbers outside the reference's [min, max]),
as the monitor's report shows it. `summary` is etl's `datasets/quality.json`: row counts,
rows removed, missing shares and unseen categories, read from the same table. Plain
pandas on every row, because it is cheap where Evidently is not."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlcycle.ingest.data import Schema


def by_feature(reference: pd.DataFrame, current: pd.DataFrame, schema: Schema) -> list[dict]:
    """One row per feature, in the schema's order."""
    out = []
    for col in schema.features:
        ref, cur = reference[col], current[col]
        row = {
            "column": col,
            "kind": "numerical" if col in schema.numeric else "categorical",
            "missing_reference": _share(ref.isna()),
            "missing_current": _share(cur.isna()),
            "new_categories": [],
            "new_category_share": 0.0,
            "out_of_range_share": 0.0,
            "reference_range": None,
        }
        if col in schema.numeric:
            ref_num = pd.to_numeric(ref, errors="coerce")
            cur_num = pd.to_numeric(cur, errors="coerce").dropna()
            if ref_num.notna().any() and len(cur_num):
                low, high = float(ref_num.min()), float(ref_num.max())
                row["reference_range"] = (low, high)
                row["out_of_range_share"] = _share((cur_num < low) | (cur_num > high))
        else:
            seen = set(ref.dropna().astype(str).unique())
            cur_text = cur.dropna().astype(str)
            unseen = ~cur_text.isin(seen)
            row["new_categories"] = sorted(cur_text[unseen].unique().tolist())
            row["new_category_share"] = _share(unseen) if len(cur_text) else 0.0
        out.append(row)
    return out


def summary(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    schema: Schema,
    removed: dict[str, int],
    tables: dict | None = None,
) -> dict:
    """Rows, rows removed for a missing target, missing shares (4 decimals) and the
    categories of current never seen in reference (only the columns that have some);
    given the files as read (`csvread.Table` by role), the placeholders and infinities
    each numeric column read as missing."""
    rows = by_feature(reference, current, schema)
    out = {
        "rows": {"reference": len(reference), "current": len(current)},
        "removed_missing_target": removed,
        "missing_share": {
            "reference": {q["column"]: round(q["missing_reference"], 4) for q in rows},
            "current": {q["column"]: round(q["missing_current"], 4) for q in rows},
        },
        "new_categories_in_current": {
            q["column"]: q["new_categories"] for q in rows if q["new_categories"]
        },
    }
    if tables is not None:
        columns = [*schema.features, schema.target]
        out["read_as_missing"] = {
            role: {
                "placeholders": {c: n for c, n in table.placeholders.items() if c in columns},
                "infinite": {c: n for c, n in table.infinite.items() if c in columns},
            }
            for role, table in tables.items()
        }
    return out


def _share(mask) -> float:
    mask = np.asarray(mask)
    return float(mask.mean()) if mask.size else 0.0
