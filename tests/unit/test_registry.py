"""Registry: signed immutable versions, tamper detection, stages; the bundle's fast scorer."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest

from txguard.domain.clock import FixedClock
from txguard.domain.errors import ConflictError, IntegrityError, NotFoundError
from txguard.features.spec import FeatureSpec
from txguard.model.policy import Policy, Thresholds
from txguard.model.registry import Registry
from txguard.model.scorer import Calibration

SPEC = FeatureSpec.from_yaml(
    "entities: {sender: [sender_account_id]}\npointwise: [log_amount, hour_of_day, is_weekend, is_night]\n"
)
NAMES = SPEC.names


def _booster(seed: int = 0) -> lgb.Booster:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2000, len(NAMES)))
    x[rng.random(x.shape) < 0.05] = np.nan
    y = (np.nan_to_num(x[:, 0]) + 0.5 * np.nan_to_num(x[:, 1]) + rng.normal(size=2000)) > 1.5
    params = {
        "objective": "binary",
        "verbose": -1,
        "num_threads": 1,
        "seed": seed,
        "num_leaves": 15,
    }
    return lgb.train(params, lgb.Dataset(x, y.astype(int)), num_boost_round=40)


def _register(reg: Registry, seed: int = 0) -> str:
    return reg.register(
        model_text=_booster(seed).model_to_string(),
        spec_yaml=SPEC.to_yaml(),
        policy=Policy(Thresholds(0.1, 0.5, 0.9)),
        calibration=Calibration(a=0.9, b=-0.2),
        metrics={"auc_roc": 0.9, "average_precision": 0.5 + seed / 100, "cp_at_100": 0.3},
        meta={"feature_names": list(NAMES), "feature_spec_hash": SPEC.hash, "seed": seed},
    )


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    clock = FixedClock(datetime(2026, 11, 23, 12, 0, tzinfo=UTC))
    return Registry(tmp_path / "registry", "test-key", clock=clock)


def test_register_load_and_predict_matches_booster(reg: Registry) -> None:
    v = _register(reg)
    assert v.startswith("v20261123-120000-")
    b = reg.load(v)
    assert b.version == v and b.feature_names == NAMES and b.policy.default.review == 0.5
    assert b.spec == SPEC
    rng = np.random.default_rng(5)
    rows = rng.normal(size=(200, len(NAMES)))
    rows[rng.random(rows.shape) < 0.1] = np.nan
    raw_ref = b.booster.predict(rows, raw_score=True)
    fast = np.array([b.predict_raw(r) for r in rows])
    np.testing.assert_allclose(fast, raw_ref, rtol=0, atol=1e-12)
    probs = np.array([b.predict(r) for r in rows])
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-(0.9 * raw_ref - 0.2))), atol=1e-12)
    np.testing.assert_allclose(b.predict_batch(rows), probs, atol=1e-12)
    contrib = b.contributions(rows[0])
    assert set(contrib) == {*NAMES, "__bias__"}
    assert sum(contrib.values()) == pytest.approx(raw_ref[0], abs=1e-9)
    # the fast path is the same TreeSHAP as Booster.predict(pred_contrib=True), bit for bit
    for r in rows[:20]:
        ref = b.booster.predict(r.reshape(1, -1), pred_contrib=True)[0]
        got = b.contributions(r)
        assert [got[n] for n in NAMES] + [got["__bias__"]] == ref.tolist()


def test_the_fast_path_keeps_the_gil_for_short_calls_only_with_the_same_numbers(
    reg: Registry,
) -> None:
    """The raw score always keeps the GIL; TreeSHAP keeps it when a call is shorter than the
    switch interval and releases it otherwise; both ways give the same numbers."""
    import sys

    v = _register(reg)
    before = sys.getswitchinterval()
    try:
        sys.setswitchinterval(1.0)  # every call is shorter than this
        keeping = reg.load(v)
        sys.setswitchinterval(1e-6)  # and longer than this
        releasing = reg.load(v)
    finally:
        sys.setswitchinterval(before)
    assert keeping._fast.keeps_gil and releasing._fast.keeps_gil
    assert keeping._fast_contrib.keeps_gil and not releasing._fast_contrib.keeps_gil
    rows = np.random.default_rng(9).normal(size=(20, len(NAMES)))
    for r in rows:
        assert keeping.contributions(r) == releasing.contributions(r)
        assert keeping.predict_raw(r) == releasing.predict_raw(r)


def test_flipped_byte_refuses_to_load(reg: Registry) -> None:
    v = _register(reg)
    path = reg.root / "versions" / v / "model.txt"
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"model.txt was modified"):
        reg.verify(v)
    with pytest.raises(IntegrityError, match=r"model.txt was modified"):
        reg.load(v)


def test_manifest_edit_or_other_key_fails_signature(reg: Registry, tmp_path: Path) -> None:
    v = _register(reg)
    other = Registry(reg.root, "another-key")
    with pytest.raises(IntegrityError, match="signature does not verify"):
        other.load(v)
    d = reg.root / "versions" / v
    (d / "MANIFEST.json").chmod(0o644)
    (d / "MANIFEST.json").write_text(
        (d / "MANIFEST.json").read_text().replace('"format": 1', '"format": 2')
    )
    with pytest.raises(IntegrityError, match="signature"):
        reg.verify(v)


def test_extra_or_missing_file_is_refused(reg: Registry) -> None:
    v = _register(reg)
    d = reg.root / "versions" / v
    d.chmod(0o755)
    (d / "evil.py").write_text("print('hi')")
    with pytest.raises(IntegrityError, match="not in the manifest"):
        reg.verify(v)
    (d / "evil.py").unlink()
    (d / "policy.json").unlink()
    with pytest.raises(IntegrityError, match=r"policy\.json is missing"):
        reg.verify(v)


def test_unknown_version(reg: Registry) -> None:
    with pytest.raises(NotFoundError):
        reg.load("v-nope")
    with pytest.raises(NotFoundError, match="no production model"):
        reg.load_production()


def test_stages_promote_rollback(reg: Registry) -> None:
    clock: Any = reg._clock
    v1 = _register(reg, 0)
    clock.advance(seconds=60)
    v2 = _register(reg, 1)
    assert [i.stage for i in reg.list()] == ["candidate", "candidate"]
    reg.promote(v1)
    reg.promote(v2)
    assert reg.production() == v2
    assert {i.version: i.stage for i in reg.list()} == {v1: "archived", v2: "production"}
    assert reg.load_production().version == v2
    assert reg.rollback() == v1
    assert {i.version: i.stage for i in reg.list()} == {v1: "production", v2: "archived"}
    with pytest.raises(ConflictError, match="nothing to roll back"):
        reg.rollback()
    diff = reg.diff(v1, v2)
    assert diff["metrics"]["average_precision"] == [0.5, 0.51]
    assert diff["meta"]["seed"] == [0, 1]


def test_tampered_stage_file_is_refused(reg: Registry) -> None:
    v = _register(reg)
    reg.promote(v)
    st = reg.root / "stages.json"
    st.write_text(st.read_text().replace(v, "v-other"))
    with pytest.raises(IntegrityError, match="stage file"):
        reg.production()


def test_versions_are_immutable_on_disk(reg: Registry) -> None:
    v = _register(reg)
    d = reg.root / "versions" / v
    # read-only for everyone (root ignores modes, so check the bits rather than a write)
    assert all(p.stat().st_mode & 0o777 == 0o444 for p in d.iterdir())
    assert d.stat().st_mode & 0o777 == 0o555


def test_wrong_row_shape_is_a_validation_error(reg: Registry) -> None:
    from txguard.domain.errors import ValidationError

    b = reg.load(_register(reg))
    with pytest.raises(ValidationError, match="expected 4 features"):
        b.predict(np.zeros(3))
    with pytest.raises(ValidationError, match="expected"):
        b.predict_batch(np.zeros((2, 5)))


def test_platt_calibration_recovers_a_known_mapping() -> None:
    rng = np.random.default_rng(0)
    raw = rng.normal(size=20000) * 2
    y = rng.random(20000) < 1 / (1 + np.exp(-(0.5 * raw - 1.0)))
    c = Calibration.fit(raw, y)
    assert c.a == pytest.approx(0.5, abs=0.05)
    assert c.b == pytest.approx(-1.0, abs=0.05)
    assert Calibration.from_dict(c.to_dict()) == c
