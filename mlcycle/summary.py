"""Print what the pipeline produced and how to look at it (the end of `make run`)."""

from __future__ import annotations

import mlflow

from mlcycle import config
from mlcycle.lifecycle import registry


def lines(model_name: str = config.DEFAULT_MODEL_NAME) -> list[str]:
    uri = config.tracking_uri()
    mlflow.set_tracking_uri(uri)
    out = [f"tracking store: {uri}"]
    for alias in (config.CHAMPION, config.CHALLENGER, config.PREVIOUS):
        version = registry.version_for_alias(model_name, alias)
        if version is not None:
            family = version.tags.get("mlcycle.family", "?")
            out.append(
                f"{alias:>10}: models:/{model_name}@{alias} = version {version.version} ({family})"
            )
    latest = config.REPORTS_DIR / model_name / "latest.html"
    if latest.exists():
        out.append(f"report: {latest}")
    out += [
        f"inspect: mlflow ui --backend-store-uri {uri}",
        f"serve:   mlflow models serve -m models:/{model_name}@champion --env-manager local"
        " --port 5001   (or: make serve)",
    ]
    return out


if __name__ == "__main__":
    print("\n".join(lines()))
