"""`skuai models shadow` (a challenger scored on live traffic), `skuai models compare` (its
score), and the check `skuai models activate` makes on corrected jobs. No TensorFlow here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import redis

from shared.feedback_store import FeedbackStore
from shared.shadow_store import DEFAULT_SAMPLE, ShadowStore, activation_verdict
from skuai.cli_base import fail, settings


def _stores() -> tuple[ShadowStore, FeedbackStore]:
    from shared.redis_client import connect

    config = settings()
    conn = connect(config)
    return ShadowStore(conn, ttl=config.result_ttl), FeedbackStore(conn)


@click.command("shadow")
@click.argument("version", required=False)
@click.option(
    "--sample",
    type=click.FloatRange(0, 1, min_open=True),
    default=DEFAULT_SAMPLE,
    show_default=True,
    help="Share of live images the challenger also sees.",
)
@click.option("--off", is_flag=True, help="Take the challenger out of the shadow.")
@click.option("--registry", type=click.Path(path_type=Path), default=None)
def models_shadow(version: str | None, sample: float, off: bool, registry: Path | None) -> None:
    """Run VERSION in the shadow of the active one on a sample of live images (after each
    answer is stored, never returned); without VERSION, say which one is there."""
    from training.registry import Registry

    shadows, _ = _stores()
    if off:
        was = shadows.stop()
        click.echo(f"{was.version} is out of the shadow" if was else "no challenger was running")
        return
    if version is None:
        current = shadows.config()
        click.echo(
            f"{current.version} sees {current.sample:.0%} of live images"
            if current
            else "no challenger in the shadow (skuai models shadow VERSION)"
        )
        return
    reg = Registry(registry or settings().registry_dir)
    reg.path(version)
    if version == reg.active():
        fail(f"{version} is the active version: shadow another one")
    shadows.start(version, sample)
    click.echo(f"{version} now sees {sample:.0%} of live images in the shadow of {reg.active()}")


@click.command("compare")
@click.argument("champion")
@click.argument("challenger")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
def models_compare(champion: str, challenger: str, as_json: bool) -> None:
    """How CHALLENGER did in CHAMPION's shadow: agreement on live jobs, disagreements by SKU,
    and both versions' accuracy on jobs that were later corrected."""
    shadows, feedback = _stores()
    found = shadows.compare(champion, challenger, feedback)
    if as_json:
        click.echo(json.dumps(found))
        return
    for line in describe(found):
        click.echo(line)


def describe(found: dict[str, Any]) -> list[str]:
    """A comparison as lines for the terminal."""
    champion, challenger = found["champion"], found["challenger"]
    lines = [f"{challenger} in the shadow of {champion}: {found['scored']} live jobs scored"]
    for part, share in found["agreement"].items():
        lines.append(f"  same {part:<9} {'-' if share is None else f'{share:.1%}'}")
    corrected = found["corrected"]
    if corrected["jobs"]:
        for version in (champion, challenger):
            right = corrected["correct"][version]
            lines.append(f"  {version} right on {right}/{corrected['jobs']} corrected jobs")
    else:
        lines.append("  no corrected job answered by both yet")
    for row in found["disagreements"]:
        lines.append(
            f"  {row['champion_sku']} -> {row['challenger_sku']}: {row['count']} job"
            + "s" * (row["count"] != 1)
        )
    return lines


def check_activation(active: str | None, version: str, force: bool) -> None:
    """Refuse (one line, exit 1) a version right less often than the active one on corrected
    jobs both answered, unless `force`; say so when there are too few to judge."""
    if active is None or active == version:
        return
    try:
        shadows, feedback = _stores()
        allowed, line = activation_verdict(shadows, active, version, feedback)
    except redis.RedisError as exc:  # activation works without the service running
        click.echo(f"not compared on corrected jobs: Redis unreachable ({exc.__class__.__name__})")
        return
    if allowed or force:
        click.echo(line + ("; activating anyway (--force)" if not allowed else ""))
        return
    fail(f"{line}: {version} was not activated (--force to activate it anyway)")


def status_lines() -> list[str]:
    """The challenger in the shadow and the retraining trigger's last run, for `models list`
    (nothing when Redis cannot be reached: the registry alone is still listed)."""
    try:
        shadows, _ = _stores()
        config, retrain = shadows.config(), shadows.retrain_status()
    except redis.RedisError:
        return []
    lines = []
    if config is not None:
        lines.append(f"shadow: {config.version} on {config.sample:.0%} of live images")
    if retrain is not None:
        state = retrain["state"]
        detail = {
            "running": f"since {retrain['started_at']} from {retrain.get('parent')}",
            "succeeded": f"{retrain.get('version')} in the shadow, {retrain.get('finished_at')}",
            "failed": f"at {retrain.get('finished_at')}: {retrain.get('error')}",
        }.get(state, "")
        lines.append(f"retrain: {state} {detail}")
    return lines
