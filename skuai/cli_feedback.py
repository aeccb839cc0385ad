"""`skuai feedback export` (corrected images in the dataset layout) and `skuai keys review` (a
tenant's review opt-in, the same as `PUT /v1/review/settings`). No TensorFlow here."""

from __future__ import annotations

import json
from pathlib import Path

import click

from shared.review_store import MAX_CAP_MB, MAX_RETENTION_DAYS, REASONS
from skuai.cli_base import settings
from skuai.console import make_progress


@click.group()
def feedback() -> None:
    """Corrections partners sent (POST /v1/jobs/{id}/feedback)."""


@feedback.command("export")
@click.argument("data_dir", metavar="DATA", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--tenant", "tenants", multiple=True, help="Only this tenant (repeatable); all by default."
)
@click.option("--since", default=None, help="Only corrections at or after this ISO date or time.")
@click.option(
    "--dedup-against",
    "dedup_against",
    multiple=True,
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    help="Leave out near-duplicates of photos in this dataset folder too (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the counts and manifest as JSON.")
def feedback_export(
    data_dir: Path,
    tenants: tuple[str, ...],
    since: str | None,
    dedup_against: tuple[Path, ...],
    as_json: bool,
) -> None:
    """Write corrected images into DATA/<model>/<sku>/ (new labels included), leaving out
    near-duplicates of photos already in DATA, with a manifest in DATA/.skuai-feedback/."""
    from shared.blobs import open_blob_store
    from shared.feedback_store import FeedbackStore
    from shared.redis_client import connect
    from training.feedback_export import export_feedback

    config = settings()
    store = FeedbackStore(connect(config))
    chosen = list(tenants) or store.tenants()
    with make_progress(transient=True, disable=as_json) as progress:
        task = progress.add_task("exporting corrections", total=None)
        report = export_feedback(
            data_dir,
            store,
            open_blob_store(config),
            tenants=chosen,
            since=_epoch(since) if since else None,
            dedup_against=dedup_against,
            progress=lambda n: progress.advance(task, n),
        )
    counts = report.counts()
    if as_json:
        click.echo(json.dumps({"counts": counts, "manifest": str(report.manifest)}))
        return
    shown = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) or "nothing"
    click.echo(f"{len(report.rows)} corrections: {shown}")
    click.echo(f"manifest  {report.manifest} (and .csv)")


def _epoch(value: str) -> float:
    from shared.errors import SkuaiError
    from shared.feedback_store import since_epoch

    try:
        return since_epoch(value)
    except SkuaiError as exc:
        raise click.BadParameter(exc.message, param_hint="--since") from None


@click.command("review")
@click.option("--tenant", required=True)
@click.option(
    "--keep",
    default="",
    help=f"What to keep, comma-separated from {','.join(REASONS)}; empty: keep nothing new.",
)
@click.option("--sample", default=0.0, type=click.FloatRange(0, 1), show_default=True)
@click.option(
    "--retention-days",
    default=30.0,
    type=click.FloatRange(0, MAX_RETENTION_DAYS, min_open=True),
    show_default=True,
)
@click.option(
    "--cap-mb",
    default=500.0,
    type=click.FloatRange(0, MAX_CAP_MB, min_open=True),
    show_default=True,
)
@click.option("--min-confidence", default=0.5, type=click.FloatRange(0, 1), show_default=True)
@click.option("--json", "as_json", is_flag=True)
def keys_review(
    tenant: str,
    keep: str,
    sample: float,
    retention_days: float,
    cap_mb: float,
    min_confidence: float,
    as_json: bool,
) -> None:
    """Set a tenant's review opt-in: which images to keep, for how long, how much at most."""
    from shared.api_keys import check_tenant_name
    from shared.blobs import open_blob_store
    from shared.redis_client import connect
    from shared.review_store import ReviewSettings, ReviewStore

    wanted = tuple(dict.fromkeys(r.strip() for r in keep.split(",") if r.strip()))
    wrong = [r for r in wanted if r not in REASONS]
    if wrong:
        raise click.BadParameter(
            f"{wrong[0]!r}: choose from {', '.join(REASONS)}", param_hint="--keep"
        )
    config = settings()
    store = ReviewStore(connect(config), open_blob_store(config))
    chosen = ReviewSettings(wanted, sample, retention_days, cap_mb, min_confidence)
    done = store.configure(check_tenant_name(tenant), chosen)
    if as_json:
        click.echo(json.dumps({"tenant": tenant, **done.to_public()}))
        return
    kept = ", ".join(done.keep) or "nothing"
    click.echo(
        f"{tenant}: keeps {kept} (sample {done.sample:g}) for {done.retention_days:g} days, "
        f"at most {done.cap_mb:g} MiB"
    )
