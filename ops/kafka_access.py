"""Who may do what on Kafka: one SCRAM principal per service and the ACLs that confine it.

Only the ingest writes readings and their dead letters, only the stream workers (which run the
market) write stats, forecasts, alerts, trades and their own changelog and internal topics, and
each consumer reads only what it needs under its own consumer group. The table is made from the
settings' topic names, so the local platform, each isolated test and a cluster (the chart runs
`citygrid kafka grant` as a Job with the admin principal) get the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass

from citygrid.settings import CitygridSettings
from citygrid.topics import (
    advisor_group,
    aggregate_members_topic,
    bidder_group,
    cleared_orders_topic,
    dead_letters_topic,
    dedupe_state_topic,
    interval_summaries_topic,
    market_topics,
    verified_readings_topic,
)


@dataclass(frozen=True)
class Grant:
    """One service's right on one resource (a topic, a group or a transactional id; `prefix` for name
    prefixes)."""

    principal: str
    resource: str  # "topic", "group" or "transactional_id"
    name: str
    operations: tuple[str, ...]
    prefix: bool = False


READ, WRITE = ("READ", "DESCRIBE"), ("WRITE", "DESCRIBE", "CREATE")


def grants(s: CitygridSettings) -> list[Grant]:
    """Every grant the services need, from the settings' topic and group names."""
    k = s.kafka
    own = [  # (principal, topics it writes)
        # The ingest's instances write verified readings; its dedupe stage, the readings (once each), their
        # dead letters and its window changelog, in transactions.
        ("ingest", [k.readings_topic, k.dead_letter_topic, verified_readings_topic(k),
                    dedupe_state_topic(k)]),
        # The workers write the market's ticks to the orders topic, and its cleared books and summaries.
        ("worker", [k.stats_topic, k.forecasts_topic, k.alerts_topic, *market_topics(k),
                    aggregate_members_topic(k)]),
        ("participant", [k.orders_topic]),
    ]
    reads = [  # (principal, topics it reads, its group)
        ("worker", [k.readings_topic, k.orders_topic, k.forecasts_topic, aggregate_members_topic(k)],
         k.stream_app_id),
        ("anchorer", [k.readings_topic], k.anchor_group),
        ("settler", [k.trades_topic, cleared_orders_topic(k), interval_summaries_topic(k)],
         s.settlement.group),
        # A participant's bidder reads forecasts (of its own devices) under its own group.
        ("participant", [k.forecasts_topic], None),
        ("advisor", [k.readings_topic], advisor_group(k)),
    ]
    out = [Grant(p, "topic", t, WRITE) for p, topics in own for t in topics]
    for principal, topics, group in reads:
        out += [Grant(principal, "topic", t, READ) for t in topics]
        # What it cannot process goes to its own dead-letter topic, written by it alone.
        out += [Grant(principal, "topic", dead_letters_topic(t, principal), WRITE) for t in topics]
        if group:
            out.append(Grant(principal, "group", group, READ))
    # The dedupe stage reads the verified readings and its changelog in its group, and each instance
    # commits under a transactional id of its own, all named after kafka.ingest_group.
    out += [Grant("ingest", "topic", t, READ) for t in (verified_readings_topic(k), dedupe_state_topic(k))]
    out += [Grant("ingest", "group", k.ingest_group, READ),
            Grant("ingest", "transactional_id", k.ingest_group, ("WRITE", "DESCRIBE"), prefix=True)]
    # Faust's changelog, repartition and leader topics are all named after the app id.
    out.append(Grant("participant", "group", bidder_group(k, ""), READ, prefix=True))
    out += [Grant("worker", "topic", k.stream_app_id, ("ALL",), prefix=True),
            Grant("worker", "group", k.stream_app_id, ("ALL",), prefix=True)]
    return out


def apply(admin_settings: CitygridSettings, for_settings: CitygridSettings | None = None) -> int:
    """Create the ACLs of `grants(for_settings)` with the admin principal; returns how many."""
    from kafka.admin import (
        ACL,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePattern,
        ResourceType,
    )

    from citygrid.kafka_clients import admin

    acls = []
    for g in grants(for_settings or admin_settings):
        pattern = ResourcePattern(
            ResourceType[g.resource.upper()], g.name,
            ACLResourcePatternType.PREFIXED if g.prefix else ACLResourcePatternType.LITERAL)
        acls += [ACL(f"User:{g.principal}", "*", ACLOperation[op], ACLPermissionType.ALLOW, pattern)
                 for op in g.operations]
    client = admin(admin_settings.kafka)
    try:
        result = client.create_acls(acls)
    finally:
        client.close()
    if result["failed"]:
        raise RuntimeError(f"Kafka refused {len(result['failed'])} ACLs: {result['failed'][:3]}")
    return len(acls)


def ensure_principals(admin_settings: CitygridSettings, passwords: dict[str, str]) -> None:
    """Create or update each principal's SCRAM credential (the chart's setup Job; the local broker
    gets its principals when its storage is formatted)."""
    from kafka.admin._users import UserScramCredentialUpsertion

    from citygrid.kafka_clients import admin

    mechanism = admin_settings.kafka.sasl_mechanism
    client = admin(admin_settings.kafka)
    try:
        failed = {user: error for user, error in client.alter_user_scram_credentials(
            [UserScramCredentialUpsertion(user, mechanism, pw) for user, pw in passwords.items()]).items()
            if error}
    finally:
        client.close()
    if failed:
        raise RuntimeError(f"Kafka refused the credentials of {sorted(failed)}: {failed}")
