"""FeatureSpec: YAML in, ordered validated feature names out, errors that name the entry."""

from __future__ import annotations

import re

import pytest

from txguard.domain.errors import ValidationError
from txguard.features.spec import FeatureSpec, default_spec, format_duration, parse_duration

SMALL = """
entities: {sender: [sender_account_id], pair: [sender_account_id, recipient_account_id]}
pointwise: [log_amount, is_night]
aggregates:
  - {entity: sender, aggs: [count, mean], field: amount_usd, windows: [1h, 24h]}
  - {entity: pair, aggs: [fraud_rate], windows: [30d], delay: 7d}
  - {entity: sender, aggs: [distinct, new], field: device_id, windows: [7d]}
external: [ip_risk]
"""


def test_names_follow_entity_agg_field_window_and_keep_declaration_order() -> None:
    spec = FeatureSpec.from_yaml(SMALL)
    assert spec.names == (
        "log_amount",
        "is_night",
        "sender_count_1h",
        "sender_mean_amount_usd_1h",
        "sender_count_1d",  # 24h is written canonically
        "sender_mean_amount_usd_1d",
        "pair_fraud_rate_30d_lag7d",
        "sender_distinct_device_id_7d",
        "sender_new_device_id_7d",
        "ip_risk",
    )
    assert spec.external == ("ip_risk",)


def test_hash_is_stable_and_survives_a_yaml_round_trip() -> None:
    a = FeatureSpec.from_yaml(SMALL)
    b = FeatureSpec.from_yaml(a.to_yaml())
    assert a.hash == b.hash and a == b
    assert re.fullmatch(r"[0-9a-f]{64}", a.hash)
    changed = FeatureSpec.from_yaml(SMALL.replace("1h, 24h", "1h, 48h"))
    assert changed.hash != a.hash


def test_default_spec_covers_the_fraud_and_aml_features() -> None:
    spec = default_spec()
    for name in (
        "sender_count_1d",
        "sender_mean_amount_usd_7d",
        "sender_std_amount_usd_30d",
        "sender_max_amount_usd_30d",
        "sender_zscore_amount_usd_30d",
        "sender_ratio_mean_amount_usd_30d",
        "terminal_count_30d",
        "terminal_fraud_rate_7d_lag7d",
        "terminal_fraud_count_30d_lag7d",
        "sender_fraud_rate_30d",
        "sender_time_since_last_30d",
        "is_weekend",
        "is_night",
        "hour_of_day",
        "account_age_days",
        "sender_distinct_recipient_account_id_1d",
        "sender_new_device_id_90d",
        "sender_new_recipient_country_90d",
        "recipient_distinct_sender_account_id_1d",
        "amount_below_10k",
    ):
        assert name in spec.names, name
    assert len(set(spec.names)) == len(spec.names)


@pytest.mark.parametrize(
    ("yaml_text", "fragment"),
    [
        ("entities: {s: [nope]}", "entities.s: unknown key field 'nope'"),
        (
            "entities: {s: [sender_account_id]}\naggregates: [{entity: t, aggs: [count], windows: [1d]}]",
            "aggregates[0].entity: unknown entity 't'",
        ),
        (
            "entities: {s: [sender_account_id]}\naggregates: [{entity: s, aggs: [count], windows: [1d, 3x]}]",
            "aggregates[0].windows[1]: not a duration",
        ),
        (
            "entities: {s: [sender_account_id]}\naggregates: [{entity: s, aggs: [mean], windows: [1d]}]",
            "aggregates[0].field: mean needs a numeric field",
        ),
        (
            "entities: {s: [sender_account_id]}\naggregates: [{entity: s, aggs: [median], field: amount, windows: [1d]}]",
            "aggregates[0].aggs[0]: unknown aggregate 'median'",
        ),
        (
            "entities: {s: [sender_account_id]}\naggregates: [{entity: s, aggs: [count], windows: [1d], delay: 7d}]",
            "aggregates[0].delay: only fraud_count and fraud_rate",
        ),
        ("pointwise: [log_amount, log_amount]", "defined twice"),
        ("pointwise: [sqrt_amount]", "pointwise[0]: unknown transform"),
        ("buckets: 0", "buckets: expected an integer"),
        ("colour: blue", "colour: unknown key"),
        ("[1, 2", "not valid YAML"),
        (
            "buckets: 7\nentities: {s: [sender_account_id]}\naggregates: [{entity: s, aggs: [count], windows: [1s]}]",
            "whole-microsecond",
        ),
    ],
)
def test_invalid_specs_name_the_entry(yaml_text: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as e:
        FeatureSpec.from_yaml(yaml_text)
    assert fragment in str(e.value)


def test_spec_file_path_and_missing_file(tmp_path: object) -> None:
    from pathlib import Path

    p = Path(str(tmp_path)) / "spec.yaml"
    p.write_text(SMALL)
    assert FeatureSpec.from_yaml(p).hash == FeatureSpec.from_yaml(SMALL).hash
    with pytest.raises(ValidationError, match="no such spec file"):
        FeatureSpec.from_yaml(Path(str(tmp_path)) / "missing.yaml")


def test_durations() -> None:
    assert parse_duration("90m") == 5400
    assert format_duration(parse_duration("24h")) == "1d"
    assert format_duration(parse_duration("2w")) == "14d"
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("0d")
